import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';

const run = promisify(execFile);
export const RABBIT_HOST = '127.0.0.1';
export const RABBIT_PORT = 5672;

export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The shared broker must be up (scripts/ensure-services.mjs starts it before the tests). */
export async function ensureRabbit(): Promise<void> {
  if (!(await portOpen(RABBIT_PORT))) {
    throw new Error(`RabbitMQ is not listening on ${RABBIT_HOST}:${RABBIT_PORT}: run 'node scripts/ensure-services.mjs' (or 'rabbitmq-server -detached')`);
  }
}

export interface Vhost {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Each test run gets its own vhost, so queues and messages never mix between runs. */
export async function createVhost(prefix = 'test'): Promise<Vhost> {
  await ensureRabbit();
  const name = `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
  await run('rabbitmqctl', ['-q', 'add_vhost', name]);
  await run('rabbitmqctl', ['-q', 'set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  let dropped = false;
  return {
    name,
    url: `amqp://guest:guest@${RABBIT_HOST}:${RABBIT_PORT}/${encodeURIComponent(name)}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      await run('rabbitmqctl', ['-q', 'delete_vhost', name]).catch(() => {});
    },
  };
}

export interface Received {
  routingKey: string;
  exchange: string;
  properties: ConsumeMessage['properties'];
  body: any;
}

/**
 * Consumes a queue and keeps what arrived, so a test can wait for what it
 * expects. Declares nothing: the gateway declares the contract's topology.
 */
export class Collector {
  readonly messages: Received[] = [];
  /** What happened to the subscription besides messages (a broker cancel, a closed channel), for failure messages. */
  readonly events: string[] = [];
  private waiters: (() => void)[] = [];
  private constructor(private readonly conn: ChannelModel) {}

  static async open(url: string, queue: string, timeoutMs = 20_000): Promise<Collector> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let conn: ChannelModel | null = null;
      try {
        conn = await amqp.connect(url);
        conn.on('error', () => {});
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        await ch.checkQueue(queue);
        const c = new Collector(conn);
        const note = (what: string) => c.events.push(`${new Date().toISOString()} ${what}`);
        conn.on('close', (err?: Error) => note(`connection closed${err ? `: ${err.message}` : ''}`));
        ch.on('close', () => note('channel closed'));
        await ch.consume(queue, (m) => {
          if (!m) {
            note('consumer cancelled by the broker');
            return;
          }
          c.messages.push({ routingKey: m.fields.routingKey, exchange: m.fields.exchange, properties: m.properties, body: JSON.parse(m.content.toString('utf8')) });
          ch.ack(m);
          const w = c.waiters;
          c.waiters = [];
          for (const f of w) f();
        });
        return c;
      } catch (err) {
        // The queue appears once the gateway has connected and declared its topology.
        await conn?.close().catch(() => {});
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Resolves with the matching messages once `count` of them have arrived. */
  async waitFor(pred: (m: Received) => boolean, count = 1, timeoutMs = 15_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.filter(pred);
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${found.length}/${count} matching messages (of ${this.messages.length} received)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits `ms`, then returns the matches: for "exactly once" checks. */
  async settle(pred: (m: Received) => boolean, ms = 1000): Promise<Received[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.messages.filter(pred);
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => {});
  }
}

export async function publishJson(url: string, queue: string, body: unknown): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    ch.sendToQueue(queue, Buffer.from(JSON.stringify(body)), { persistent: true, contentType: 'application/json' });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}
