import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import amqp from 'amqplib';
import { createVhost } from '../test/support/rabbit.js';
import { spawnGateway, tempDir } from '../test/support/gateway.js';
import { TestSmsc } from '../test/support/smsc.js';
import { fmt, percentile } from './lib.js';
import { brokerReady } from './lib.js';

export interface SmsBenchOptions {
  /** Citizen messages to send (default 5000). */
  total?: number;
  /** deliver_sm outstanding at once over the one bind, like an SMSC's window (default 32). */
  window?: number;
  /** Every n-th message is a 3-part UDH long message (default 10; 0 = none). */
  longEvery?: number;
  /** Messages sent first and not measured (default 500). */
  warmup?: number;
  /** Broker vhost URL; default: a fresh vhost, dropped afterwards. */
  amqpUrl?: string;
  /** Run the `npm run build` output, as `npm start` does (default true); false runs src/ through tsx. */
  compiled?: boolean;
  /** Extra node arguments for the gateway process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Called with the gateway's pid before and after the measured run. */
  onMeasure?: (phase: 'start' | 'end', pid: number) => void;
}

export interface SmsBenchResult {
  /** Citizen messages per second from the first deliver_sm to the last confirmed ticket on `tickets.created`. */
  messagesPerSecond: number;
  /** deliver_sm sent → ticket consumed from `tickets.created`, ms. */
  p50Ms: number;
  p99Ms: number;
  /** deliver_sm sent → deliver_sm_resp (ack after durable), ms. */
  ackP50Ms: number;
  ackP99Ms: number;
  total: number;
  retries: number;
}

const TEXT = '暴雨后小区门口积水严重，车辆无法通行，请尽快处理。';
const LONG = `${TEXT}${'小区物业不作为，多次反映无果，恳请相关部门督促解决。'.repeat(4)}`;

/**
 * SMS intake throughput: a test SMSC drives deliver_sm over one transceiver bind
 * to a gateway process, and a consumer on `tickets.created` times each ticket's
 * arrival. Every deliver_sm is answered only after its ticket is journaled; the
 * clock stops when the broker has confirmed and delivered the last ticket.
 */
export async function benchSms(opts: SmsBenchOptions = {}): Promise<SmsBenchResult> {
  const total = opts.total ?? 5000;
  const window = opts.window ?? 32;
  const longEvery = opts.longEvery ?? 10;
  const warmup = opts.warmup ?? 500;
  const vhost = opts.amqpUrl ? null : await createVhost('bench-sms');
  const amqpUrl = opts.amqpUrl ?? vhost!.url;
  const smsc = await TestSmsc.start();
  const dataDir = tempDir('bench-sms-');
  // Receipts go out as submit_sm during the run; a high TPS keeps them from queueing behind the limit.
  const proc = await spawnGateway(
    { AMQP_URL: amqpUrl, DATA_DIR: dataDir, SMPP_URL: smsc.url, LOG_LEVEL: 'warn', SMS_TPS: '1000', SMS_WINDOW: '64' },
    { compiled: opts.compiled ?? true, nodeArgs: opts.nodeArgs },
  );
  await brokerReady(proc.baseUrl);
  const conn = await amqp.connect(amqpUrl);
  const arrivals = new Map<string, number>();
  let retries = 0;
  try {
    await smsc.waitForBind(1, 20_000);
    const ch = await conn.createChannel();
    await ch.prefetch(2000);
    await ch.consume('tickets.created', (m) => {
      if (!m) return;
      const body = JSON.parse(m.content.toString('utf8')) as { content: string };
      const key = /#(\w+-\d+)#/.exec(body.content)?.[1];
      if (key) arrivals.set(key, performance.now());
      ch.ack(m);
    });

    const run = async (prefix: string, n: number) => {
      const sent = new Map<string, number>();
      const acks: number[] = [];
      let next = 0;
      let phone = 13800000000;
      const one = async (i: number) => {
        const key = `${prefix}-${i}`;
        const from = String(phone++);
        const long = longEvery > 0 && i % longEvery === 0;
        const pdus = long
          ? smsc.segments(`${LONG}#${key}#`, { method: 'udh8', ref: i & 0xff, parts: 3, from })
          : [{ source_addr: from, data_coding: 8, short_message: Buffer.from(`${TEXT}#${key}#`, 'utf16le').swap16() }];
        sent.set(key, performance.now());
        for (const pdu of pdus) {
          for (;;) {
            const t = performance.now();
            const status = await smsc.deliver(pdu, 60_000);
            if (status === 0) {
              acks.push(performance.now() - t);
              break;
            }
            // ESME_RX_T_APPN: the gateway could not store it now; an SMSC retries.
            retries++;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      };
      const worker = async () => {
        while (next < n) await one(next++);
      };
      const t0 = performance.now();
      await Promise.all(Array.from({ length: window }, worker));
      const until = Date.now() + 180_000;
      while ([...sent.keys()].some((k) => !arrivals.has(k))) {
        if (Date.now() > until) throw new Error(`SMS bench: tickets did not arrive: ${[...sent.keys()].filter((k) => !arrivals.has(k)).slice(0, 10).join(", ")}\n${proc.output().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const last = Math.max(...[...sent.keys()].map((k) => arrivals.get(k)!));
      const e2e = [...sent].map(([k, t]) => arrivals.get(k)! - t).sort((a, b) => a - b);
      acks.sort((a, b) => a - b);
      return { seconds: (last - t0) / 1000, e2e, acks };
    };

    if (warmup > 0) await run('warm', warmup);
    opts.onMeasure?.('start', proc.child.pid!);
    const r = await run('sms', total);
    opts.onMeasure?.('end', proc.child.pid!);
    return {
      messagesPerSecond: total / r.seconds,
      p50Ms: percentile(r.e2e, 50),
      p99Ms: percentile(r.e2e, 99),
      ackP50Ms: percentile(r.acks, 50),
      ackP99Ms: percentile(r.acks, 99),
      total,
      retries,
    };
  } finally {
    await conn.close().catch(() => {});
    proc.kill('SIGTERM');
    await proc.exited;
    await smsc.close();
    rmSync(dataDir, { recursive: true, force: true });
    await vhost?.drop();
  }
}

// `npx tsx bench/sms.ts [total] [--compiled]` runs it alone (from src/ unless --compiled, which needs `npm run build`).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const total = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5000);
  const r = await benchSms({ total, compiled: process.argv.includes('--compiled') });
  console.log(
    `SMS intake: ${fmt(r.messagesPerSecond)} msg/s over one bind, e2e p50 ${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms, ` +
      `deliver_sm_resp p50 ${fmt(r.ackP50Ms, 1)} ms, p99 ${fmt(r.ackP99Ms, 1)} ms (${r.total} messages, ${r.retries} retries)`,
  );
}
