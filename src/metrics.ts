import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CountedMetric, CountListener } from './ops/counters.js';

/**
 * Makes `counter.inc(labels, n)` also tell `listener`: the operations page's
 * per-minute counts are fed by the very increments Prometheus sees, so the two
 * cannot disagree and no call site has to remember a second counter. Only
 * `inc(labels, n)` is seen (what every call site uses); `labels(…).inc()` is not.
 */
function tap<T extends string>(counter: Counter<T>, metric: CountedMetric, listener: CountListener | undefined): Counter<T> {
  if (!listener) return counter;
  const inc = counter.inc.bind(counter) as (labels?: Partial<Record<T, string | number>> | number, value?: number) => void;
  counter.inc = ((labels?: Partial<Record<T, string | number>> | number, value?: number) => {
    inc(labels, value);
    if (labels !== undefined && typeof labels === 'object') listener.count(metric, labels as Record<string, string | number>, value ?? 1);
  }) as Counter<T>['inc'];
  return counter;
}

const STORE_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1];

/** One registry per gateway instance, so several gateways can live in one process (tests, benchmarks). */
export function createMetrics(listener?: CountListener) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  return {
    registry,
    received: tap(new Counter({ name: 'gateway_messages_received_total', help: 'Citizen messages accepted, by channel and outcome (created, duplicate, followup, rejected, query: a status query answered)', labelNames: ['channel', 'status'], registers: [registry] }), 'received', listener),
    rejected: tap(new Counter({ name: 'gateway_messages_rejected_total', help: 'Input that became intake.rejected, by channel and reason', labelNames: ['channel', 'reason'], registers: [registry] }), 'rejected', listener),
    httpRejected: new Counter({ name: 'gateway_http_rejected_total', help: 'HTTP requests refused (4xx), by code', labelNames: ['code'], registers: [registry] }),
    published: new Counter({ name: 'gateway_published_total', help: 'Messages confirmed by the broker, by type', labelNames: ['type'], registers: [registry] }),
    publishRetries: new Counter({ name: 'gateway_publish_retries_total', help: 'Publishes nacked, returned or lost with the connection, and retried', labelNames: ['reason'], registers: [registry] }),
    confirmLatency: new Histogram({ name: 'gateway_confirm_latency_seconds', help: 'Time from publish to broker confirm', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] }),
    outboxDepth: new Gauge({ name: 'gateway_outbox_depth', help: 'Messages journaled and not yet confirmed by the broker', registers: [registry] }),
    openDeadlines: new Gauge({ name: 'gateway_open_deadlines', help: 'Tickets whose response deadline is still running', registers: [registry] }),
    deadlineEvents: new Counter({ name: 'gateway_deadline_events_total', help: 'Deadline events fired, by kind (warning, breached)', labelNames: ['kind'], registers: [registry] }),
    deadlineLag: new Histogram({ name: 'gateway_deadline_lag_seconds', help: 'How late a deadline event fired after its due time', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300], registers: [registry] }),
    outbound: tap(new Counter({ name: 'gateway_outbound_total', help: 'Receipts, replies and notices sent, by channel, kind and result', labelNames: ['channel', 'kind', 'result'], registers: [registry] }), 'outbound', listener),
    // Where a write's wait in the store goes (see CommitTiming): queued behind the batch
    // in progress, the commit itself, then the fsync. Fine buckets at the low end: the
    // target is a 20 ms p99 for the whole request.
    storeQueued: new Histogram({ name: 'gateway_store_queued_seconds', help: 'Oldest unit of a commit: queued until the commit started', buckets: STORE_BUCKETS, registers: [registry] }),
    storeCommit: new Histogram({ name: 'gateway_store_commit_seconds', help: 'Running a commit (SQLite: on the event loop)', buckets: STORE_BUCKETS, registers: [registry] }),
    storeDurable: new Histogram({ name: 'gateway_store_durable_seconds', help: 'Commit to durable: the WAL fsync, including one already in flight', buckets: STORE_BUCKETS, registers: [registry] }),
    storeCheckpoint: new Histogram({ name: 'gateway_store_checkpoint_seconds', help: 'SQLite WAL checkpoints, on their own thread (off the event loop)', buckets: STORE_BUCKETS, registers: [registry] }),
    storeBatch: new Histogram({ name: 'gateway_store_batch_units', help: 'Units per commit', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000], registers: [registry] }),
    brokerUp: new Gauge({ name: 'gateway_broker_up', help: '1 while the broker connection is up', registers: [registry] }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
