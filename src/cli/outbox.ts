import type { Config } from '../config.js';
import type { OutboxSummary, Store } from '../store/types.js';
import { checks, runCheck, type CheckResult } from './doctor.js';
import { age, iso } from './output.js';

export interface OutboxView {
  storeKind: string;
  depth: number;
  oldestAt: string | null;
  oldestAgeMs: number | null;
  oldestRoutingKey: string | null;
  taken: number;
  lapsed: number;
  /** Each broker node as this machine reaches it. */
  broker: { ok: boolean; detail: string }[];
  /** The gateway's own view (GET /readyz), when --url was given. */
  gateway: { broker?: string; brokerError?: string; backlog?: number; error?: string } | null;
  /** What the oldest row waits for, in a sentence. */
  waitsFor: string;
}

/**
 * What holds the outbox up, in the order an operator would look: nothing waiting;
 * rows stranded by an instance whose lease lapsed; the broker not reachable; the
 * gateway's own broker link down (from /readyz); else rows simply in flight.
 */
export async function outboxView(store: Store, config: Config, now: number, opts: { timeoutMs: number; readyzUrl: string | null }): Promise<OutboxView> {
  const s: OutboxSummary = await store.outboxSummary();
  const brokerChecks = s.depth > 0 ? await Promise.all(checks(config).filter((c) => c.name === 'broker').map((c) => runCheck(c, opts.timeoutMs))) : [];
  const gateway = opts.readyzUrl ? await readyz(opts.readyzUrl, opts.timeoutMs) : null;
  const view: OutboxView = {
    storeKind: store.kind,
    depth: s.depth,
    oldestAt: iso(s.oldestAt),
    oldestAgeMs: s.oldestAt === null ? null : Math.max(0, now - s.oldestAt),
    oldestRoutingKey: s.oldestRoutingKey,
    taken: s.taken,
    lapsed: s.lapsed,
    broker: brokerChecks.map((c: CheckResult) => ({ ok: c.status === 'ok', detail: c.detail })),
    gateway,
    waitsFor: '',
  };
  view.waitsFor = waitsFor(view);
  return view;
}

function waitsFor(v: OutboxView): string {
  if (v.depth === 0) return 'nothing: the outbox is empty';
  if (v.lapsed > 0) {
    return `${v.lapsed} rows were taken by an instance whose lease lapsed: another instance's relay takes them over within about a second; if they stay, no instance is running`;
  }
  const down = v.broker.filter((b) => !b.ok);
  if (down.length === v.broker.length && down.length > 0) return `the broker: no node answers this machine (${down.map((b) => b.detail).join('; ')})`;
  if (v.gateway?.broker === 'down') return `the gateway's broker link, which is down: ${v.gateway.brokerError ?? 'no reason given'}`;
  if (v.gateway?.error) return `unknown: the gateway's /readyz did not answer (${v.gateway.error}); the broker answers this machine`;
  if (v.taken > 0) return `broker confirms for ${v.taken} rows a relay has taken`;
  return 'the relay: the broker answers this machine, so rows should leave within seconds; if the depth stays, is a gateway running on this store? (--url shows its broker link)';
}

async function readyz(base: string, timeoutMs: number): Promise<NonNullable<OutboxView['gateway']>> {
  try {
    const res = await fetch(`${base.replace(/\/+$/, '')}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { broker?: string; brokerError?: string; backlog?: number };
    return { broker: body.broker, brokerError: body.brokerError, backlog: body.backlog };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

export function formatOutbox(v: OutboxView): string {
  const lines = [`depth      ${v.depth} (${v.storeKind})`];
  if (v.oldestAt !== null) lines.push(`oldest     ${age(v.oldestAgeMs!)} old, ${v.oldestRoutingKey} (journaled ${v.oldestAt})`);
  if (v.storeKind !== 'sqlite') lines.push(`taken      ${v.taken} (live leases)`, `lapsed     ${v.lapsed}`);
  for (const b of v.broker) lines.push(`broker     ${b.ok ? 'ok  ' : 'FAIL'} ${b.detail}`);
  if (v.gateway) {
    lines.push(
      v.gateway.error
        ? `gateway    /readyz did not answer: ${v.gateway.error}`
        : `gateway    broker ${v.gateway.broker}${v.gateway.brokerError ? ` (${v.gateway.brokerError})` : ''}, backlog ${v.gateway.backlog}`,
    );
  }
  lines.push(`waits for  ${v.waitsFor}`);
  return lines.join('\n');
}
