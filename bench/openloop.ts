import http from 'node:http';
import { postJson } from './lib.js';

/**
 * Open-loop sender: request i is due at t0 + i/rate and goes out then, whatever
 * earlier requests are doing, so a slow server does not slow the sender down. Its
 * latency is taken from the due time, not from when it left: a request that waited
 * behind the sender (event loop late, no free socket) counts that wait, which a
 * closed-loop or burst-paced sender would hide (coordinated omission). autocannon's
 * `overallRate` sends each connection's share in a burst at the start of every
 * second, which both inflates and hides parts of the tail; this does not.
 */
export interface OpenLoopOptions {
  /** Requests go to these URLs in turn (round-robin at the sender, as a simple balancer would). */
  urls: string[];
  headers: Record<string, string>;
  body: (i: number) => string;
  rate: number;
  total: number;
  /** Called for each 2xx answer with its body and its due time (performance.now() clock). */
  onAnswer?: (i: number, body: string, dueAt: number) => void;
}

/** Distinct failure reasons kept; later new ones count under `other`, so a run that fails wholesale stays small. */
const MAX_REASONS = 10;
/** Characters kept of each reason's first body or error message. */
const SAMPLE_CHARS = 120;

export interface OpenLoopResult {
  ok: number;
  failed: number;
  /**
   * Failed requests by reason: `HTTP <status>` for an answer outside 2xx, else the
   * error's code (ECONNRESET, EPIPE, …) or, without one, its message. At most
   * MAX_REASONS reasons, then `other`; the counts add up to `failed`.
   */
  failures: Record<string, number>;
  /** Per reason, the first answer body, or each distinct error message (` | `-separated), cut to SAMPLE_CHARS: which 503, which reset. */
  failureSamples: Record<string, string>;
  /** Rate of 2xx answers over the time from the first due time to the last answer. */
  answeredPerSecond: number;
  /** Due time → answer, ms, sorted. */
  latencyMs: number[];
  /** How late the sender itself sent, ms (due → handed to the socket), p99 and max: a check on the sender. */
  sendLagP99Ms: number;
  sendLagMaxMs: number;
}

export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  // Enough sockets that an overloaded server does not make requests queue in the
  // agent for long; those that do still count from their due time.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const targets = o.urls.map((u) => new URL(u));
  const latency: number[] = [];
  const sendLag: number[] = [];
  let ok = 0;
  let failed = 0;
  // Maps, not objects: an error message is any string, `constructor` included.
  const failures = new Map<string, number>();
  const failureSamples = new Map<string, string>();
  const fail = (status: number, text: string, err?: NodeJS.ErrnoException) => {
    failed++;
    let reason = status ? `HTTP ${status}` : (err?.code ?? err?.message ?? 'no answer');
    if (!failures.has(reason) && failures.size >= MAX_REASONS) reason = 'other';
    failures.set(reason, (failures.get(reason) ?? 0) + 1);
    const seen = failureSamples.get(reason);
    if (seen === undefined) failureSamples.set(reason, (status ? text : (err?.message ?? '')).slice(0, SAMPLE_CHARS));
    // One code can mean different things (ECONNRESET: `socket hang up`, no answer at
    // all, or `aborted`, an answer cut off), so each distinct message is kept.
    else if (!status && err?.message && !seen.split(' | ').includes(err.message)) failureSamples.set(reason, `${seen} | ${err.message}`.slice(0, SAMPLE_CHARS));
  };
  let done = 0;
  let lastAnswer = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const t0 = performance.now() + 20;

  const send = (i: number, due: number) => {
    const url = targets[i % targets.length]!;
    const body = o.body(i);
    sendLag.push(performance.now() - due);
    const settle = () => {
      if (++done === o.total) finish();
    };
    postJson(agent, url, o.headers, body, (status, text, err) => {
      if (status >= 200 && status < 300) {
        const now = performance.now();
        ok++;
        lastAnswer = now;
        latency.push(now - due);
        o.onAnswer?.(i, text, due);
      } else fail(status, text, err);
      settle();
    });
  };

  // The scheduler wakes at least every millisecond and sends everything now due;
  // setTimeout's own lateness is in the send lag, and in the latency.
  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (next < o.total) {
        const due = t0 + (next / o.rate) * 1000;
        if (due > now) break;
        send(next, due);
        next++;
      }
      if (next >= o.total) return resolve();
      const wait = t0 + (next / o.rate) * 1000 - performance.now();
      setTimeout(tick, Math.max(0, Math.min(1, wait)));
    };
    setTimeout(tick, Math.max(0, t0 - performance.now()));
  });
  await finished;
  agent.destroy();
  sendLag.sort((a, b) => a - b);
  return {
    ok,
    failed,
    failures: Object.fromEntries(failures),
    failureSamples: Object.fromEntries(failureSamples),
    answeredPerSecond: ok / ((lastAnswer - t0) / 1000),
    latencyMs: latency.sort((a, b) => a - b),
    sendLagP99Ms: sendLag[Math.floor(sendLag.length * 0.99)] ?? NaN,
    sendLagMaxMs: sendLag[sendLag.length - 1] ?? NaN,
  };
}

/**
 * `N failed` for a report line and, when N > 0, why: `2 failed (HTTP 503 ×1:
 * {"error":"…"}; ECONNRESET ×1: socket hang up)`. Samples are put on one line.
 */
export function formatFailed(r: Pick<OpenLoopResult, 'failed' | 'failures' | 'failureSamples'>): string {
  if (r.failed === 0) return '0 failed';
  const why = Object.entries(r.failures).map(([reason, n]) => {
    const sample = Object.hasOwn(r.failureSamples, reason) ? r.failureSamples[reason]!.replace(/\s+/g, ' ').trim() : '';
    return `${reason} ×${n}${sample ? `: ${sample}` : ''}`;
  });
  return `${r.failed} failed (${why.join('; ')})`;
}
