import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { THREADED_CHANNELS, type Channel, type ChannelAdapter, type OutboundMessage, type SendResult } from './channels/types.js';
import type { OutboundRow, SqliteStore } from './store/sqlite.js';
import type { Metrics } from './metrics.js';
import type { Ticket } from './ticket.js';
import { GatewayError, errorCode, errorMessage, isTransient } from './errors.js';
import { replyFailed, ticketEvent } from './publish/messages.js';

const CONCURRENCY = 32;

/**
 * The outbound row id of a downstream reply. A replyId is unique within its ticket
 * (the same replyId on two tickets is two replies), so the id names both. The store
 * migrates rows of the earlier `reply:<replyId>` form to this one.
 */
export function replyRowId(ticketId: string, replyId: string): string {
  return `reply:${ticketId}:${replyId}`;
}

/** The replyId a reply row was posted with. */
export function replyIdOf(row: Pick<OutboundRow, 'id' | 'ticket_id'>): string {
  const prefix = `reply:${row.ticket_id ?? ''}:`;
  return row.id.startsWith(prefix) ? row.id.slice(prefix.length) : row.id.slice('reply:'.length);
}
const MAX_SLEEP = 60_000;

/**
 * Sends receipts, replies and notices through the ticket's own channel. Rows are
 * durable before anything is sent; a row is marked sent (and the event it
 * causes is journaled) in one transaction after the channel accepted it, so the
 * same replyId is never sent twice once it went out. Transient failures retry
 * with exponential backoff up to SEND_MAX_ATTEMPTS; permanent ones, and
 * exhausted retries, become `reply.failed` with the vendor's answer.
 */
export class OutboundDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private armedFor: number | null = null;
  private inflight = new Set<string>();
  private stopped = false;
  private scanning = false;
  private rescan = false;

  constructor(
    private readonly store: SqliteStore,
    private readonly adapters: Map<Channel, ChannelAdapter>,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    this.wake();
  }

  wake(): void {
    if (this.stopped) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    setImmediate(() => void this.scan());
  }

  private arm(at: number): void {
    if (this.stopped) return;
    if (this.armedFor !== null && this.armedFor <= at && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.armedFor = null;
      void this.scan();
    }, Math.max(0, Math.min(at - this.clock.now(), MAX_SLEEP)));
  }

  private async scan(): Promise<void> {
    if (this.scanning || this.stopped || this.store.isClosed) return;
    this.scanning = true;
    try {
      let now = this.clock.now();
      do {
        this.rescan = false;
        now = this.clock.now();
        const room = CONCURRENCY - this.inflight.size;
        if (room <= 0) break;
        const rows = this.store.dueOutbound(now, room + this.inflight.size).filter((r) => !this.inflight.has(r.id));
        for (const row of rows.slice(0, room)) {
          this.inflight.add(row.id);
          void this.sendRow(row).finally(() => {
            this.inflight.delete(row.id);
            this.wake();
          });
        }
      } while (this.rescan);
      // Rows due at `now` were taken above (or are in flight and wake us when done); arm for the
      // first one after it. Reading the clock once matters: a timer may fire a millisecond early.
      const next = this.store.nextOutboundAfter(now);
      if (next !== null) this.arm(next);
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'outbound scan failed');
      this.arm(this.clock.now() + 1000);
    } finally {
      this.scanning = false;
    }
  }

  private toMessage(row: OutboundRow): OutboundMessage {
    const target = JSON.parse(row.target) as { citizen: OutboundMessage['citizen']; source: Record<string, unknown>; subject: string | null; ticketNumber: string | null };
    // Only a threaded channel (mail) cites what was sent before on the ticket.
    const threadIds = row.ticket_id && THREADED_CHANNELS.has(row.channel as Channel)
      ? this.store
          .outboundByTicket(row.ticket_id)
          .filter((o) => o.upstream_id && o.id !== row.id)
          .map((o) => o.upstream_id!)
      : [];
    return {
      id: row.id,
      kind: row.kind as OutboundMessage['kind'],
      channel: row.channel as Channel,
      text: row.text,
      ticketId: row.ticket_id,
      ticketNumber: target.ticketNumber,
      citizen: target.citizen,
      subject: target.subject,
      source: target.source,
      threadIds,
      attempt: row.attempts + 1,
    };
  }

  private async sendRow(row: OutboundRow): Promise<void> {
    const adapter = this.adapters.get(row.channel as Channel);
    const msg = this.toMessage(row);
    let result: SendResult;
    try {
      if (!adapter) throw new GatewayError('CHANNEL_OFF', `channel ${row.channel} is not configured`, { transient: false });
      // The row (and its ticket) may be committed but not yet synced: tell the citizen nothing before it is on disk.
      await this.store.whenDurable();
      result = await adapter.send(msg);
    } catch (err) {
      await this.recordFailure(row, err);
      return;
    }
    this.metrics.outbound.inc({ channel: row.channel, kind: row.kind, result: 'sent' });
    await this.store
      .run(() => {
        const now = this.clock.now();
        this.store.outboundSent(row.id, now, result.via, result.upstreamId);
        if (!row.ticket_id) return;
        if (result.upstreamId && THREADED_CHANNELS.has(row.channel as Channel)) this.store.addRef(result.upstreamId, row.ticket_id);
        const t = this.ticket(row.ticket_id);
        if (!t) return;
        if (row.kind === 'receipt') {
          if (this.store.setAcknowledged(t.id, now)) {
            this.store.addOutbox(ticketEvent('acknowledged', t, { ticketId: t.id, number: t.number, at: new Date(now).toISOString(), via: result.via }), now);
          }
        } else if (row.kind === 'reply') {
          const replyId = replyIdOf(row);
          const respondBy = Date.parse(t.deadline.respondBy);
          const received = Date.parse(t.receivedAt);
          // The first reply meets the deadline: cancel what has not fired yet.
          if (this.store.setResponded(t.id, now)) this.store.cancelDeadlines(t.id);
          this.store.addOutbox(
            ticketEvent('responded', t, { ticketId: t.id, number: t.number, replyId, at: new Date(now).toISOString(), withinDeadline: now <= respondBy, latencyMs: now - received }, replyId),
            now,
          );
        }
      })
      .catch((err: unknown) => {
        // Sent but not recorded: it stays pending and is sent again later. Better twice than never.
        this.logger.error({ err: errorMessage(err), id: row.id }, 'sent, but could not record it');
      });
  }

  private ticket(id: string): Ticket | null {
    const r = this.store.getTicketRow(id);
    return r ? (JSON.parse(r.body) as Ticket) : null;
  }

  private async recordFailure(row: OutboundRow, err: unknown): Promise<void> {
    const transient = isTransient(err);
    const attempts = row.attempts + 1;
    const final = !transient || attempts >= this.config.SEND_MAX_ATTEMPTS;
    const error = { code: errorCode(err), message: errorMessage(err), detail: err instanceof GatewayError ? err.detail : undefined, attempts };
    this.metrics.outbound.inc({ channel: row.channel, kind: row.kind, result: final ? 'failed' : 'retry' });
    this.logger.warn({ id: row.id, channel: row.channel, ...error, final }, final ? 'outbound message failed' : 'outbound message will be retried');
    await this.store
      .run(() => {
        const now = this.clock.now();
        if (!final) {
          const backoff = Math.min(300_000, 1000 * 2 ** (attempts - 1));
          this.store.outboundRetry(row.id, now + backoff, JSON.stringify(error));
          return;
        }
        this.store.outboundFailed(row.id, JSON.stringify(error));
        const t = row.ticket_id ? this.ticket(row.ticket_id) : null;
        const replyId = row.kind === 'reply' ? replyIdOf(row) : row.id;
        this.store.addOutbox(replyFailed(t, row.channel as Channel, { ticketId: row.ticket_id, replyId, error }), now);
      })
      .catch((e: unknown) => this.logger.error({ err: errorMessage(e), id: row.id }, 'could not record outbound failure'));
    const next = this.store.isClosed ? null : this.store.nextOutbound();
    if (next !== null) this.arm(next);
  }

  /** Let sends in flight finish (bounded by `graceMs`), then stop. Idempotent. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const until = Date.now() + graceMs;
    while (this.inflight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }
}
