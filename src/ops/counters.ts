import type { Clock } from '../clock.js';

/** Minutes kept: the page shows the last hour as 60 one-minute buckets. */
export const MINUTES = 60;
const MINUTE = 60_000;
/**
 * Label values are finite (channels, rejection reasons, outbound kinds), but they
 * come from code paths this module does not control: past this many keys a new
 * one is folded into `other` rather than growing the map.
 */
const MAX_KEYS = 32;

/** A count per minute for the last MINUTES minutes, in two fixed arrays. */
class MinuteSeries {
  private readonly counts = new Array<number>(MINUTES).fill(0);
  /** The minute (ms / 60 000) each slot counts; a slot of an older minute reads as 0. */
  private readonly minutes = new Array<number>(MINUTES).fill(-1);

  add(now: number, n: number): void {
    const m = Math.floor(now / MINUTE);
    const slot = m % MINUTES;
    if (this.minutes[slot] !== m) {
      this.minutes[slot] = m;
      this.counts[slot] = 0;
    }
    this.counts[slot]! += n;
  }

  /** Oldest first; the last element is the current (partial) minute. */
  series(now: number): number[] {
    const cur = Math.floor(now / MINUTE);
    const out: number[] = [];
    for (let m = cur - MINUTES + 1; m <= cur; m++) {
      const slot = m % MINUTES;
      out.push(this.minutes[slot] === m ? this.counts[slot]! : 0);
    }
    return out;
  }
}

function bounded<V>(map: Map<string, V>, key: string, make: () => V): V {
  let v = map.get(key);
  if (v !== undefined) return v;
  const k = map.size >= MAX_KEYS ? 'other' : key;
  v = map.get(k);
  if (v === undefined) {
    v = make();
    map.set(k, v);
  }
  return v;
}

export type CountedMetric = 'received' | 'rejected' | 'outbound';

/** What createMetrics calls on every increment of a counted metric (see metrics.ts). */
export interface CountListener {
  count(metric: CountedMetric, labels: Record<string, string | number>, value: number): void;
}

export interface ChannelCounts {
  /** Accepted (created, duplicate, follow-up) per minute, oldest first. */
  received: number[];
  /** Refused into intake.rejected per minute, oldest first. */
  rejected: number[];
  /** When this channel last accepted a message (for webhook channels: the last push that was taken), or null. */
  lastAcceptedAt: number | null;
}

/**
 * The operations page's per-minute counts, kept in memory and fed from the same
 * increments as the Prometheus counters (a page must not need Prometheus to show
 * the last hour). Fixed arrays per key, keys bounded: memory does not grow with
 * traffic or uptime. Per instance: in a cluster each instance counts what it took.
 */
export class OpsCounters implements CountListener {
  private readonly received = new Map<string, MinuteSeries>();
  private readonly rejected = new Map<string, MinuteSeries>();
  private readonly reasons = new Map<string, MinuteSeries>();
  private readonly outbound = new Map<string, MinuteSeries>();
  private readonly lastAccepted = new Map<string, number>();

  constructor(private readonly clock: Clock) {}

  count(metric: CountedMetric, labels: Record<string, string | number>, value: number): void {
    const now = this.clock.now();
    const channel = String(labels.channel ?? 'unknown');
    if (metric === 'received') {
      // `rejected` outcomes are counted by the rejected counter with their reason.
      if (labels.status === 'rejected') return;
      bounded(this.received, channel, () => new MinuteSeries()).add(now, value);
      if (this.lastAccepted.has(channel) || this.lastAccepted.size < MAX_KEYS) this.lastAccepted.set(channel, now);
    } else if (metric === 'rejected') {
      bounded(this.rejected, channel, () => new MinuteSeries()).add(now, value);
      bounded(this.reasons, String(labels.reason ?? 'unknown'), () => new MinuteSeries()).add(now, value);
    } else if (labels.result !== 'sent') {
      // Only trouble is shown: a retry or a final failure of a receipt, reply or notice.
      bounded(this.outbound, `${String(labels.kind)}:${String(labels.result)}`, () => new MinuteSeries()).add(now, value);
    }
  }

  channel(channel: string): ChannelCounts {
    const now = this.clock.now();
    return {
      received: this.received.get(channel)?.series(now) ?? new Array<number>(MINUTES).fill(0),
      rejected: this.rejected.get(channel)?.series(now) ?? new Array<number>(MINUTES).fill(0),
      lastAcceptedAt: this.lastAccepted.get(channel) ?? null,
    };
  }

  /** Channels that counted anything (a channel may be off here yet named by another instance's rows). */
  channels(): string[] {
    return [...new Set([...this.received.keys(), ...this.rejected.keys()])];
  }

  /** Rejections in the last hour by reason. */
  rejectedByReason(): Record<string, number> {
    return sumEach(this.reasons, this.clock.now());
  }

  /** Outbound retries and failures in the last hour, keyed `kind:result`. */
  outboundTrouble(): Record<string, number> {
    return sumEach(this.outbound, this.clock.now());
  }
}

function sumEach(map: Map<string, MinuteSeries>, now: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, s] of map) {
    const n = s.series(now).reduce((a, b) => a + b, 0);
    if (n > 0) out[k] = n;
  }
  return out;
}
