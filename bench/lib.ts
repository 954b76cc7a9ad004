import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import amqp from 'amqplib';

/** Shared pieces of the benchmarks: a keep-alive HTTP load generator, percentiles, a raw publish baseline. */

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface LoadOptions {
  url: string;
  headers: Record<string, string>;
  /** Body of request i. */
  body: (i: number) => string;
  total: number;
  concurrency: number;
  /** Called with the response body of a 2xx answer, and the time the request was sent. */
  onAnswer?: (i: number, status: number, body: string, sentAt: number) => void;
}

export interface LoadResult {
  ok: number;
  failed: number;
  seconds: number;
  perSecond: number;
  latencyMs: number[];
}

/**
 * One POST of `body` on `agent`; `done` gets the status and the answer's text, or
 * status 0 and the error when the request failed before a whole answer. Both load
 * generators use it.
 */
export function postJson(
  agent: http.Agent,
  url: URL,
  headers: Record<string, string>,
  body: string,
  done: (status: number, body: string, err?: NodeJS.ErrnoException) => void,
): void {
  // Called once: a socket that dies mid-answer can report on both the request and the response.
  let called = false;
  const once = (status: number, text: string, err?: NodeJS.ErrnoException) => {
    if (called) return;
    called = true;
    done(status, text, err);
  };
  const req = http.request(
    { agent, method: 'POST', host: url.hostname, port: url.port, path: url.pathname, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
    (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => once(res.statusCode ?? 0, Buffer.concat(chunks).toString()));
      // Once the head is in, a reset before the end is reported here and not on
      // `req`; without this the request would never settle and the run would hang.
      res.on('error', (err) => once(0, '', err));
    },
  );
  req.on('error', (err) => once(0, '', err));
  req.end(body);
}

/** A size field of /proc/<pid>/status (VmRSS, VmHWM, …) in MB; NaN once the process is gone. */
export function procStatusMb(pid: number, field: string): number {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Keep-alive HTTP POST load with bounded concurrency, each client sending its next
 * request when its answer is in (as fast as answers come). Fixed rates go through
 * `openLoop` (openloop.ts): pacing these clients would hide the time a request
 * waits for a free client.
 */
export async function httpLoad(o: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const url = new URL(o.url);
  let next = 0;
  let ok = 0;
  let failed = 0;
  const latency: number[] = [];
  const t0 = performance.now();
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const sentAt = performance.now();
      postJson(agent, url, o.headers, o.body(i), (status, body) => {
        if (status >= 200 && status < 300) {
          ok++;
          latency.push(performance.now() - sentAt);
          o.onAnswer?.(i, status, body, sentAt);
        } else failed++;
        resolve();
      });
    });
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= o.total) return;
      await one(i);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { ok, failed, seconds, perSecond: ok / seconds, latencyMs: latency.sort((a, b) => a - b) };
}

/** Raw amqplib confirmed publishing to a quorum queue: the broker's ceiling on this machine. */
export async function rawConfirmedPublish(url: string, queue: string, total: number, bodyBytes: number, window = 1000): Promise<{ perSecond: number; seconds: number }> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const body = Buffer.alloc(bodyBytes, 'x');
    let inflight = 0;
    let done = 0;
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      let sent = 0;
      const pump = () => {
        while (inflight < window && sent < total) {
          inflight++;
          sent++;
          ch.publish('', queue, body, { persistent: true, contentType: 'application/json' }, (err) => {
            inflight--;
            if (err) return reject(err);
            if (++done === total) resolve();
            else pump();
          });
        }
      };
      pump();
    });
    const seconds = (performance.now() - t0) / 1000;
    await ch.deleteQueue(queue);
    return { perSecond: total / seconds, seconds };
  } finally {
    await conn.close();
  }
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** The gateway has connected to the broker and declared its topology (so its queues exist). */
export async function brokerReady(baseUrl: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = (await (await fetch(`${baseUrl}/readyz`)).json()) as { broker?: string };
    if (r.broker === 'up') return;
    if (Date.now() > until) throw new Error('gateway did not connect to the broker');
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** CPU time (user + system) a process has used so far, ms. */
export function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** The local RabbitMQ node's VM, whose CPU per ticket the reports show beside the gateway's. */
export function brokerPid(): number | null {
  try {
    return Number(execFileSync('pgrep', ['-o', '-f', 'beam.smp.*rabbit']).toString().trim()) || null;
  } catch {
    return null;
  }
}

/** CPU used by each named process between start() and stop(), per item, µs. */
export function cpuMeter(pids: Record<string, number | null>): { stop(items: number): Record<string, number> } {
  const at = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? cpuMs(pid) : NaN]));
  return {
    stop(items) {
      return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? ((cpuMs(pid) - at[k]!) * 1000) / items : NaN]));
    },
  };
}
