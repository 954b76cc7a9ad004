import type { Clock } from '../clock.js';
import type { ChannelAdapter } from '../channels/types.js';
import type { OpsSummary, Store } from '../store/types.js';
import { maskLogText } from '../log.js';
import { errorMessage } from '../errors.js';
import { MINUTES, type OpsCounters } from './counters.js';
import type { RecentError, RecentErrors } from './recent-errors.js';

/** The store is asked at most this often, however many pages are open. */
const SUMMARY_TTL = 1000;

export interface LinkState {
  state: 'up' | 'down' | 'degraded' | 'push';
  text: string;
}

export interface ChannelSnapshot {
  channel: string;
  on: boolean;
  link: LinkState;
  lastMinute: number;
  lastHour: number;
  rejectedHour: number;
  /** Accepted per minute, oldest first, MINUTES long. */
  series: number[];
  rejectedSeries: number[];
  lastAcceptedAt: number | null;
}

export interface OpsSnapshot {
  at: number;
  instance: string;
  storeKind: string;
  broker: { state: 'up' | 'down'; lastError: string | null };
  channels: ChannelSnapshot[];
  rejectedByReason: Record<string, number>;
  deadlines: { open: number; pastWarning: number; breachedToday: number; nextDue: number | null } | null;
  outbox: { depth: number; oldestAt: number | null; oldestAgeMs: number | null };
  /** Since start (from the Prometheus counter) and in the last hour, by kind: receipt, reply, notice. */
  outbound: Record<string, { sent: number; retry: number; failed: number; retryHour: number; failedHour: number }>;
  storeError: string | null;
  errors: RecentError[];
}

export interface OpsSources {
  clock: Clock;
  store: Store;
  instanceId: string;
  timezone: string;
  broker(): { state: 'up' | 'down'; lastError: string | null };
  adapters(): ChannelAdapter[];
  counters: OpsCounters;
  errors: RecentErrors | null;
  /** Outbound results since start: [{labels: {kind, result}, value}]. */
  outboundTotals(): Promise<{ labels: Record<string, string | number | undefined>; value: number }[]>;
}

/** Start of the local day containing `now` in `timeZone` (breaches "today" are the operator's today). */
export function localDayStart(now: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' }).formatToParts(now);
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value ?? 0);
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  const offset = wall - (now - (now % 1000));
  // The offset at `now`; a zone that changed offset since midnight (DST) is off by that hour, once a year.
  return Date.UTC(get('year'), get('month') - 1, get('day')) - offset;
}

/** What the page shows of a channel's link, from its adapter's status(). */
export function linkOf(channel: string, status: Record<string, unknown> | undefined): LinkState {
  const s = status ?? {};
  const lastError = typeof s.lastError === 'string' && s.lastError ? `: ${maskLogText(s.lastError)}` : '';
  switch (channel) {
    case 'sms':
      if (s.bound === true) return { state: s.paused === true ? 'degraded' : 'up', text: s.paused === true ? 'SMPP bound, reading paused' : 'SMPP bound' };
      if (s.connected === true) return { state: 'degraded', text: `SMPP connected, not bound${lastError}` };
      return { state: 'down', text: `SMPP down${lastError}` };
    case 'mailbox': {
      const form = s.form === true ? 'web form on' : 'web form off';
      const imap = s.imap;
      if (imap === 'off' || imap === undefined) return { state: 'push', text: `IMAP off, ${form}` };
      const i = imap as Record<string, unknown>;
      if (i.state === 'connected') {
        const reading = i.lease === 'held' ? (i.paused === true ? 'connected, paused' : 'connected, IDLE') : 'connected, standby (another instance reads)';
        return { state: i.paused === true ? 'degraded' : 'up', text: `IMAP ${reading}; ${form}` };
      }
      if (i.state === 'connecting') return { state: 'degraded', text: `IMAP connecting; ${form}` };
      return { state: 'down', text: `IMAP ${String(i.state)}; ${form}` };
    }
    case 'telegram':
      if (s.mode === 'webhook') return { state: 'push', text: 'webhook' };
      if (typeof s.lastPollError === 'string' && s.lastPollError) return { state: 'degraded', text: `polling: ${maskLogText(s.lastPollError)}` };
      return { state: 'up', text: 'polling' };
    case 'app':
      return { state: 'push', text: 'HTTP API and Open311' };
    default:
      return { state: 'push', text: 'webhook' };
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * Builds what the operations page shows. The store part is cached for a second
 * and shared by concurrent callers, so N open pages cost one query per second.
 */
export class OpsSnapshots {
  private summary: { at: number; value: OpsSummary | null; error: string | null } | null = null;
  private pending: Promise<{ value: OpsSummary | null; error: string | null }> | null = null;

  constructor(private readonly src: OpsSources) {}

  private async storeSummary(now: number): Promise<{ value: OpsSummary | null; error: string | null }> {
    if (this.summary && now - this.summary.at < SUMMARY_TTL) return this.summary;
    this.pending ??= (async () => {
      try {
        if (this.src.store.isClosed) return { value: null, error: 'store is closed' };
        return { value: await this.src.store.opsSummary(now, localDayStart(now, this.src.timezone)), error: null };
      } catch (err) {
        return { value: null, error: maskLogText(errorMessage(err)) };
      }
    })().then((r) => {
      this.summary = { at: now, ...r };
      this.pending = null;
      return r;
    });
    return this.pending;
  }

  async snapshot(): Promise<OpsSnapshot> {
    const now = this.src.clock.now();
    const { value: s, error } = await this.storeSummary(now);
    const counters = this.src.counters;
    const adapters = this.src.adapters();
    const names = [...new Set([...adapters.map((a) => a.channel as string), ...counters.channels()])];
    const channels = names.map((channel): ChannelSnapshot => {
      const adapter = adapters.find((a) => a.channel === channel);
      const c = counters.channel(channel);
      return {
        channel,
        on: Boolean(adapter),
        link: adapter ? linkOf(channel, adapter.status?.()) : { state: 'down', text: 'off on this instance' },
        lastMinute: c.received[MINUTES - 1]!,
        lastHour: sum(c.received),
        rejectedHour: sum(c.rejected),
        series: c.received,
        rejectedSeries: c.rejected,
        lastAcceptedAt: c.lastAcceptedAt,
      };
    });
    const outbound: OpsSnapshot['outbound'] = {};
    const row = (kind: string) => (outbound[kind] ??= { sent: 0, retry: 0, failed: 0, retryHour: 0, failedHour: 0 });
    for (const v of await this.src.outboundTotals()) {
      const kind = String(v.labels.kind ?? 'unknown');
      const result = String(v.labels.result ?? '');
      if (result === 'sent' || result === 'retry' || result === 'failed') row(kind)[result] += v.value;
    }
    for (const [key, n] of Object.entries(counters.outboundTrouble())) {
      const [kind, result] = key.split(':');
      if (result === 'retry') row(kind!).retryHour += n;
      if (result === 'failed') row(kind!).failedHour += n;
    }
    for (const kind of ['receipt', 'reply']) row(kind);
    const broker = this.src.broker();
    const depth = this.src.store.isClosed ? 0 : this.src.store.outboxDepth();
    const oldestAt = s?.outboxOldestAt ?? null;
    return {
      at: now,
      instance: this.src.instanceId,
      storeKind: this.src.store.kind,
      broker: { state: broker.state, lastError: broker.lastError ? maskLogText(broker.lastError) : null },
      channels,
      rejectedByReason: counters.rejectedByReason(),
      deadlines: s ? { open: s.open, pastWarning: s.pastWarning, breachedToday: s.breachedToday, nextDue: s.nextDue } : null,
      outbox: { depth, oldestAt, oldestAgeMs: oldestAt === null ? null : Math.max(0, now - oldestAt) },
      outbound,
      storeError: error,
      errors: this.src.errors?.list() ?? [],
    };
  }
}
