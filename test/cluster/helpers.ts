import { rmSync } from 'node:fs';
import { spawnGateway, tempDir, TEST_API_KEY, TEST_DOWNSTREAM_KEY, type GatewayProcess } from '../support/gateway.js';
import type { Received } from '../support/rabbit.js';

/**
 * Gateway processes of one test file that share a database: each gets its own
 * DATA_DIR (what is local stays local) and is SIGKILLed by PID in `after`,
 * also when a test failed half way.
 */
export class Instances {
  readonly procs: GatewayProcess[] = [];
  private readonly dirs: string[] = [];

  constructor(private readonly base: () => Record<string, string>) {}

  async spawn(extra: Record<string, string> = {}): Promise<GatewayProcess> {
    const dir = tempDir('gw-cluster-');
    this.dirs.push(dir);
    const p = await spawnGateway({ ...this.base(), DATA_DIR: dir, ...extra });
    this.procs.push(p);
    return p;
  }

  async kill(p: GatewayProcess): Promise<void> {
    p.kill('SIGKILL');
    await p.exited;
  }

  /** The logs of every instance, for a failure message. */
  logs(lines = 40): string {
    return this.procs.map((p, i) => `--- instance ${i} (pid ${p.child.pid}) ---\n${p.output().split('\n').slice(-lines).join('\n')}`).join('\n');
  }

  async stopAll(): Promise<void> {
    for (const p of this.procs) {
      p.kill('SIGKILL');
      await p.exited;
    }
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** The settings every cluster spec shares: the test keys, quick broker reconnects, no rate limit in the way. */
export function clusterEnv(databaseUrl: string, amqpUrl: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    AMQP_URL: amqpUrl,
    APP_API_KEYS: `test:${TEST_API_KEY}`,
    DOWNSTREAM_API_KEYS: `ops:${TEST_DOWNSTREAM_KEY}`,
    AMQP_RECONNECT_MAX: '1s',
    APP_RATE_LIMIT: '100000',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info',
  };
}

export interface Posted {
  status: number;
  id?: string;
  number?: string;
  respondBy?: string;
}

/** POST /api/v1/tickets as the intake client `test`; a network error is status 0. */
export async function postTicket(baseUrl: string, body: Record<string, unknown>, timeoutMs = 10_000): Promise<Posted> {
  try {
    const r = await fetch(`${baseUrl}/api/v1/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    if (r.status === 200 || r.status === 202) {
      const b = JSON.parse(text) as { id: string; number: string; respondBy: string };
      return { status: r.status, id: b.id, number: b.number, respondBy: b.respondBy };
    }
    return { status: r.status };
  } catch {
    return { status: 0 };
  }
}

export async function readyz(baseUrl: string): Promise<{ status: number; body: any }> {
  try {
    const r = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(3000) });
    return { status: r.status, body: await r.json() };
  } catch {
    return { status: 0, body: null };
  }
}

export interface LoadRecord {
  /** Ticket ids the gateway acknowledged (202, or 200 for a repeat). */
  acked: Set<string>;
  /** Every answer with the time its request started and ended. */
  answers: { status: number; start: number; end: number; id?: string }[];
}

/**
 * `workers` clients posting new tickets, round robin over `baseUrls`, until
 * `stop()`: what the gateway acknowledged is what must come out on the broker.
 */
export function load(baseUrls: () => string[], prefix: string, workers = 4) {
  const rec: LoadRecord = { acked: new Set(), answers: [] };
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const i = n++;
      const urls = baseUrls();
      const cid = `${prefix}-${i}`;
      const start = Date.now();
      const r = await postTicket(urls[i % urls.length]!, { clientMessageId: cid, citizen: { id: `citizen-${prefix}-${i}` }, content: `路灯不亮了，请尽快修理 ${cid}` }, 5000);
      rec.answers.push({ status: r.status, start, end: Date.now(), id: r.id });
      if (r.id) rec.acked.add(r.id);
      // A refused post is retried by the client later, not in a tight loop.
      else await sleep(100);
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker));
  return {
    rec,
    async stop(): Promise<LoadRecord> {
      running = false;
      await done;
      return rec;
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ticket ids of `wanted` not (yet) seen on a collector. */
export function missing(wanted: Iterable<string>, seen: Received[], idOf: (m: Received) => string = (m) => m.body.id): string[] {
  const have = new Set(seen.map(idOf));
  return [...wanted].filter((id) => !have.has(id));
}

/** Polls until `wanted` are all among the messages; resolves with the time it took, rejects naming what is missing. */
export async function waitAll(messages: () => Received[], wanted: Iterable<string>, timeoutMs: number, idOf?: (m: Received) => string): Promise<number> {
  const t0 = Date.now();
  const want = [...wanted];
  for (;;) {
    const left = missing(want, messages(), idOf);
    if (left.length === 0) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${left.length} of ${want.length} never arrived within ${timeoutMs} ms, e.g. ${left.slice(0, 5).join(', ')}`);
    await sleep(50);
  }
}

/** How many messages each key has. */
export function countBy(messages: Received[], key: (m: Received) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of messages) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return m;
}
