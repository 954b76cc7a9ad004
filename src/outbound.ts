import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { THREADED_CHANNELS, type Channel, type ChannelAdapter, type OutboundMessage, type SendResult } from './channels/types.js';
import type { OutboundRecord, Store } from './store/types.js';
import { delivered, replyIdOf } from './lifecycle.js';
import type { Metrics } from './metrics.js';
import { GatewayError, errorCode, errorMessage, isTransient } from './errors.js';
import { replyFailed } from './publish/messages.js';

const CONCURRENCY = 32;
/** A mail reply cites at most this many earlier messages of its ticket. */
const THREAD_ROWS = 50;
const MAX_SLEEP = 60_000;
/**
 * A row taken for sending is this instance's for this long, renewed every third of
 * it while the send is in flight; if the instance dies mid-send another one sends
 * it once the lease lapses (at most one extra send, the price of never losing one),
 * well within the 15 s the contract gives a dead instance's work.
 */
const SEND_LEASE = 9_000;

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
  private renewTimer: NodeJS.Timeout | null = null;
  private armedFor: number | null = null;
  private inflight = new Set<string>();
  private stopped = false;
  private scanning = false;
  private rescan = false;
  /** The last scan filled every free slot, so due rows may be waiting for one: a finished send looks again. */
  private starved = false;

  constructor(
    private readonly store: Store,
    /** This instance, as the owner of the rows it sends. */
    private readonly owner: string,
    private readonly adapters: Map<Channel, ChannelAdapter>,
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    /** Longest sleep between looks at the store (short when other instances add rows too). */
    private readonly maxSleepMs = MAX_SLEEP,
  ) {}

  start(): void {
    this.renewTimer = setInterval(() => {
      if (this.inflight.size === 0 || this.store.isClosed) return;
      this.store.renewOutbound(this.owner, [...this.inflight], SEND_LEASE).catch((err: unknown) => {
        this.logger.warn({ err: errorMessage(err) }, 'could not renew the claim on messages being sent');
      });
    }, SEND_LEASE / 3);
    this.renewTimer.unref();
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
    }, Math.max(0, Math.min(at - this.clock.now(), this.maxSleepMs)));
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
        if (room <= 0) {
          this.starved = true;
          break;
        }
        const claimed = await this.store.claimOutbound(now, room, this.owner, SEND_LEASE);
        if (claimed.length >= room) this.starved = true;
        const rows = claimed.filter((r) => !this.inflight.has(r.id));
        for (const row of rows) {
          this.inflight.add(row.id);
          void this.sendRow(row).finally(() => {
            this.inflight.delete(row.id);
            // A receipt at a time (one SMS, one ticket) used to cost a second scan after
            // every send, two queries that find nothing: new rows wake the dispatcher
            // themselves, later and retried ones are armed. Only rows left behind for want
            // of a slot need this one.
            if (this.starved) {
              this.starved = false;
              this.wake();
            }
          });
        }
      } while (this.rescan);
      // Rows due at `now` were taken above (or are in flight and wake us when done); arm for the
      // first one after it. Reading the clock once matters: a timer may fire a millisecond early.
      const next = await this.store.nextOutboundAfter(now);
      this.arm(next ?? now + this.maxSleepMs);
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'outbound scan failed');
      this.arm(this.clock.now() + 1000);
    } finally {
      this.scanning = false;
    }
  }

  private async toMessage(row: OutboundRecord): Promise<OutboundMessage> {
    // Only a threaded channel (mail) cites what was sent before on the ticket.
    const threadIds = row.ticketId && THREADED_CHANNELS.has(row.channel)
      ? (await this.store.outboundOfTicket(row.ticketId, THREAD_ROWS)).filter((o) => o.upstreamId && o.id !== row.id).map((o) => o.upstreamId!)
      : [];
    return {
      id: row.id,
      kind: row.kind,
      channel: row.channel,
      text: row.text,
      ticketId: row.ticketId,
      ticketNumber: row.target.ticketNumber,
      citizen: row.target.citizen,
      subject: row.target.subject,
      source: row.target.source,
      threadIds,
      attempt: row.attempts + 1,
    };
  }

  private async sendRow(row: OutboundRecord): Promise<void> {
    const adapter = this.adapters.get(row.channel);
    let result: SendResult;
    try {
      const msg = await this.toMessage(row);
      if (!adapter) throw new GatewayError('CHANNEL_OFF', `channel ${row.channel} is not configured`, { transient: false });
      // The row (and its ticket) may be committed but not yet synced: tell the citizen nothing before it is on disk.
      await this.store.whenDurable();
      result = await adapter.send(msg);
    } catch (err) {
      await this.recordFailure(row, err);
      return;
    }
    this.metrics.outbound.inc({ channel: row.channel, kind: row.kind, result: 'sent' });
    await this.store.outboundSent(row.id, result, row.ticketId ? delivered(row, result) : null).catch((err: unknown) => {
      // Sent but not recorded: it stays pending and is sent again later. Better twice than never.
      this.logger.error({ err: errorMessage(err), id: row.id }, 'sent, but could not record it');
    });
  }

  private async recordFailure(row: OutboundRecord, err: unknown): Promise<void> {
    const transient = isTransient(err);
    const attempts = row.attempts + 1;
    const final = !transient || attempts >= this.config.SEND_MAX_ATTEMPTS;
    const error = { code: errorCode(err), message: errorMessage(err), detail: err instanceof GatewayError ? err.detail : undefined, attempts };
    this.metrics.outbound.inc({ channel: row.channel, kind: row.kind, result: final ? 'failed' : 'retry' });
    this.logger.warn({ id: row.id, channel: row.channel, ...error, final }, final ? 'outbound message failed' : 'outbound message will be retried');
    try {
      if (!final) {
        const backoff = Math.min(300_000, 1000 * 2 ** (attempts - 1));
        await this.store.outboundRetry(row.id, this.clock.now() + backoff, JSON.stringify(error));
      } else {
        const t = row.ticketId ? await this.store.getTicket(row.ticketId) : null;
        const replyId = row.kind === 'reply' ? replyIdOf(row) : row.id;
        await this.store.outboundFailed(row.id, JSON.stringify(error), { outbox: [replyFailed(t?.ticket ?? null, row.channel, { ticketId: row.ticketId, replyId, error })] });
      }
    } catch (e) {
      this.logger.error({ err: errorMessage(e), id: row.id }, 'could not record outbound failure');
    }
    const next = this.store.isClosed ? null : await this.store.nextOutboundAfter(-1).catch(() => null);
    if (next !== null) this.arm(next);
  }

  /** Let sends in flight finish (bounded by `graceMs`), then stop. Idempotent. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    const until = Date.now() + graceMs;
    while (this.inflight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }
}
