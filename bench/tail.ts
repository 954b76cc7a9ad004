import { fmt } from './lib.js';

/**
 * Where a fixed-rate run's slow requests spent their time, from the gateways' own
 * /metrics read before and after the run:
 * - event-loop delay (prom-client's monitorEventLoopDelay, reset at each read, so
 *   the closing read covers the phase): time a request waited for the loop;
 * - GC pauses by kind (count, total, largest bucket);
 * - the store's commit timing (CommitTiming): queued behind the commit in progress,
 *   the commit itself, commit → durable (fsync), and units per commit.
 * Histogram percentiles are bucket bounds ("≤ 5 ms"), enough to say which part grows.
 */

type Samples = Map<string, number>;

/** prom-client's default eventLoopMonitoringPrecision. */
const LOOP_RESOLUTION_MS = 10;

function parse(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

async function scrape(baseUrl: string): Promise<Samples> {
  const res = await fetch(`${baseUrl}/metrics`);
  return parse(await res.text());
}

interface HistogramDelta {
  count: number;
  sum: number;
  /** [upper bound, cumulative count] in bucket order. */
  buckets: [number, number][];
}

function histogram(before: Samples, after: Samples, name: string, label = ''): HistogramDelta {
  const buckets: [number, number][] = [];
  for (const [k, v] of after) {
    if (!k.startsWith(`${name}_bucket{`) || !k.includes(label)) continue;
    const le = /le="([^"]+)"/.exec(k)![1]!;
    buckets.push([le === '+Inf' ? Infinity : Number(le), v - (before.get(k) ?? 0)]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const key = (suffix: string) => [...after.keys()].find((k) => k.startsWith(`${name}_${suffix}`) && k.includes(label));
  const c = key('count');
  const s = key('sum');
  return {
    count: c ? after.get(c)! - (before.get(c) ?? 0) : 0,
    sum: s ? after.get(s)! - (before.get(s) ?? 0) : 0,
    buckets,
  };
}

/** The smallest bucket bound holding at least q of the observations, in ms. */
function quantileMs(h: HistogramDelta, q: number): number {
  if (h.count === 0) return NaN;
  return (h.buckets.find(([, n]) => n >= q * h.count)?.[0] ?? Infinity) * 1000;
}

function bound(ms: number): string {
  return Number.isFinite(ms) ? `≤ ${fmt(ms, ms < 1 ? 1 : 0)}` : '> 1,000';
}

export interface TailBreakdown {
  seconds: number;
  /** Event-loop delay over the phase (monitorEventLoopDelay, 10 ms resolution), ms; several instances: the worst. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  loopDelayMeanMs: number;
  gc: { kind: string; count: number; totalMs: number; p99Ms: number }[];
  store: { name: string; count: number; p50Ms: number; p99Ms: number; maxMs: number; meanMs: number }[];
  unitsPerCommit: number;
}

export function tailProbe(baseUrls: string[]): { stop(): Promise<TailBreakdown> } {
  const t0 = performance.now();
  // Read at the start (which also resets the event-loop histogram) and at the end only:
  // a read costs the gateway a few milliseconds of work on its loop (the open-deadline
  // count, serializing every metric), so reading every second would add to what is measured.
  const first = Promise.all(baseUrls.map(scrape));
  return {
    async stop() {
      const before = await first;
      const after = await Promise.all(baseUrls.map(scrape));
      // Several instances: add their histograms (same buckets) together.
      const sum = (name: string, label = ''): HistogramDelta => {
        const hs = after.map((a, k) => histogram(before[k]!, a, name, label));
        return {
          count: hs.reduce((x, h) => x + h.count, 0),
          sum: hs.reduce((x, h) => x + h.sum, 0),
          buckets: hs[0]!.buckets.map(([le], i) => [le, hs.reduce((x, h) => x + (h.buckets[i]?.[1] ?? 0), 0)]),
        };
      };
      const gc = ['minor', 'major', 'incremental', 'weakcb'].map((kind) => {
        const h = sum('gateway_nodejs_gc_duration_seconds', `kind="${kind}"`);
        return { kind, count: h.count, totalMs: h.sum * 1000, p99Ms: quantileMs(h, 0.99) };
      });
      const store = [
        ['queued', 'gateway_store_queued_seconds'],
        ['commit', 'gateway_store_commit_seconds'],
        ['durable', 'gateway_store_durable_seconds'],
        ['checkpoint (own thread)', 'gateway_store_checkpoint_seconds'],
      ].map(([name, metric]) => {
        const h = sum(metric!);
        return { name: name!, count: h.count, p50Ms: quantileMs(h, 0.5), p99Ms: quantileMs(h, 0.99), maxMs: quantileMs(h, 1), meanMs: h.count ? (h.sum * 1000) / h.count : NaN };
      });
      const batch = sum('gateway_store_batch_units');
      const gauge = (name: string) => Math.max(...after.map((a) => (a.get(name) ?? NaN) * 1000));
      return {
        seconds: (performance.now() - t0) / 1000,
        loopDelayMaxMs: gauge('gateway_nodejs_eventloop_lag_max_seconds'),
        loopDelayP99Ms: gauge('gateway_nodejs_eventloop_lag_p99_seconds'),
        loopDelayMeanMs: gauge('gateway_nodejs_eventloop_lag_mean_seconds'),
        gc: gc.filter((g) => g.count > 0),
        store: store.filter((s) => s.count > 0),
        unitsPerCommit: batch.count ? batch.sum / batch.count : NaN,
      };
    },
  };
}

export function formatTail(t: TailBreakdown): string {
  const gc = t.gc.map((g) => `${g.kind} ${fmt(g.count)}× ${fmt(g.totalMs)} ms (p99 ${bound(g.p99Ms)} ms)`).join(', ') || 'none';
  const store = t.store
    .map((s) => `${s.name} p50 ${bound(s.p50Ms)} / p99 ${bound(s.p99Ms)} / max ${bound(s.maxMs)} ms (mean ${fmt(s.meanMs, 2)})`)
    .join('; ');
  return [
    // prom-client samples with a 10 ms timer and records the whole interval: what exceeds 10 ms is the delay.
    `event-loop delay beyond the 10 ms sampling timer: mean ${fmt(t.loopDelayMeanMs - LOOP_RESOLUTION_MS, 1)} ms, p99 ${fmt(t.loopDelayP99Ms - LOOP_RESOLUTION_MS, 1)} ms, max ${fmt(t.loopDelayMaxMs - LOOP_RESOLUTION_MS, 1)} ms`,
    `GC over ${fmt(t.seconds, 0)} s: ${gc}`,
    `store: ${store}; ${fmt(t.unitsPerCommit, 1)} units per commit`,
  ].join('\n    ');
}
