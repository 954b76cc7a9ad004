import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Clock } from './clock.js';
import { THREADED_CHANNELS, type AcceptOptions, type AcceptResult, type Channel, type TicketStatus, type ChannelState, type Inbound, type Intake, type OutboundMessage, type RejectInput, type StoredPart } from './channels/types.js';
import { GatewayError } from './errors.js';
import { TicketV1, stableId, ticketIdFor, type Attachment, type Ticket } from './ticket.js';
import { truncate } from './normalize/text.js';
import { cleanInbound } from './normalize/inbound.js';
import { classify, type Rules } from './normalize/rules.js';
import { detectLanguage } from './normalize/language.js';
import { SAME_MATTER, bigrams, dice } from './normalize/similarity.js';
import { isoDuration } from './duration.js';
import type { SqliteStore, TicketRow } from './store/sqlite.js';
import type { AttachmentStore } from './store/attachments.js';
import { encodeRaw, intakeRejected, ticketCreated, ticketEvent } from './publish/messages.js';
import type { Metrics } from './metrics.js';
import { receiptText, followupText } from './receipts.js';
import { replyIdOf, replyRowId } from './outbound.js';

export interface IntakeHooks {
  /** A deadline row was written with this due time. */
  deadlineAdded(dueAt: number): void;
  /** An outbound row is ready to send. */
  outboundAdded(): void;
}

const iso = (ms: number) => new Date(ms).toISOString();
/** A platform's own timestamp the ticket can carry; a nonsense one (year 99999, NaN) is dropped, not fatal. */
const validDate = (d: Date | null): string | null => {
  const y = d?.getUTCFullYear();
  return d && y !== undefined && !Number.isNaN(y) && y >= 1970 && y <= 9999 ? d.toISOString() : null;
};
/** The status and replies endpoints list at most this many replies, the latest (contract section 5). */
const STATUS_REPLIES = 100;

/**
 * `intake.accept` is the only place a ticket becomes durable. Pure steps
 * (cleanup, classification, language, attachment files) run first; the store
 * transaction then decides duplicate / follow-up / new, numbers the ticket,
 * finds an earlier open ticket on the same matter, and writes the ticket, its
 * raw input, dedupe keys, deadlines, the receipt and the outbox row together.
 */
export type { TicketStatus };

export class IntakeService implements Intake {
  private stopping = false;
  private readonly dayFormat: Intl.DateTimeFormat;
  hooks: IntakeHooks = { deadlineAdded: () => {}, outboundAdded: () => {} };
  /** Channels whose receipts the gateway sends with adapter.send after commit. */
  activeReceipts = new Set<Channel>();

  constructor(
    private readonly store: SqliteStore,
    private readonly attachments: AttachmentStore,
    private readonly config: Config,
    private readonly rules: Rules,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.dayFormat = new Intl.DateTimeFormat('en-CA', { timeZone: config.TIMEZONE, year: 'numeric', month: '2-digit', day: '2-digit' });
  }

  /** From now on accept() refuses new input with SHUTTING_DOWN (transient: the upstream retries elsewhere or later). */
  beginStop(): void {
    this.stopping = true;
  }

  private guard(): void {
    if (this.stopping) throw new GatewayError('SHUTTING_DOWN', 'gateway is shutting down');
  }

  backlogHigh(): boolean {
    return this.store.outboxDepth() > this.config.OUTBOX_HIGH_WATER;
  }

  policyFor(channel: Channel): { policy: 'message' | 'mailbox'; ms: number } {
    return channel === 'mailbox'
      ? { policy: 'mailbox', ms: this.config.DEADLINE_MAILBOX }
      : { policy: 'message', ms: this.config.DEADLINE_MESSAGE };
  }

  async accept(input: Inbound, opts: AcceptOptions = {}): Promise<AcceptResult> {
    this.guard();
    // Every channel's text is made safe here, once, before anything stores, classifies or shows it.
    const msg = cleanInbound(input);
    const { content, subject } = msg;
    if (!content && !subject && msg.attachments.length === 0 && !msg.location) {
      return this.rejectEmpty(msg);
    }
    // Files first: a ticket must never name an attachment that is not on disk.
    const attachments: Attachment[] = [];
    for (const a of msg.attachments) attachments.push(await this.attachments.save(a));

    const cls = classify(this.rules, subject, content);
    const language = detectLanguage(content || subject || '');
    const { policy, ms: deadlineMs } = this.policyFor(msg.channel);
    const raw = typeof msg.raw === 'string' ? Buffer.from(msg.raw, 'utf8') : msg.raw;
    const citizenKey = msg.citizen.phone ?? msg.citizen.email?.toLowerCase() ?? `${msg.channel}:${msg.citizen.channelUserId}`;
    // The first 200 characters say what the matter is; more only makes every row and comparison heavier.
    const matter = truncate(`${subject ?? ''} ${content}`.trim(), 200);

    const result = await this.store.run((): AcceptResult => {
      const now = this.clock.now();
      // Without a window the ticket id is a function of the dedupe key, so the ticket row
      // itself records that the message was seen; a dedupe row is written only for what
      // has no such id (windowed keys, follow-ups, refused empties).
      const keyedId = msg.dedupeWindowMs ? null : ticketIdFor(msg.channel, msg.dedupeKey);
      const seen = this.store.getDedupe(msg.channel, msg.dedupeKey);
      const seenId = seen && (!msg.dedupeWindowMs || now - seen.last_seen < msg.dedupeWindowMs) ? seen.ticket_id : keyedId;
      const seenRow = seenId ? this.store.getTicketRow(seenId) : undefined;
      if (seen && seenId) this.store.touchDedupe(msg.channel, msg.dedupeKey, now);
      if (seenRow) {
        if (msg.consumesPartsGroup) this.store.dropParts(msg.channel, msg.consumesPartsGroup);
        const ticket = JSON.parse(seenRow.body) as Ticket;
        return { status: 'duplicate', ticket, receipt: receiptText(this.config, ticket, policy) };
      }

      // A message that names an open ticket (reply to our receipt, ticket number) adds to it.
      for (const ref of msg.threadRefs ?? []) {
        const tid = this.store.getRef(ref);
        const row = tid ? this.store.getTicketRow(tid) : undefined;
        if (row && row.state === 'open') {
          const ticket = JSON.parse(row.body) as Ticket;
          const eventKey = `${msg.channel}:${msg.dedupeKey}`;
          this.store.addOutbox(
            ticketEvent('followup', ticket, { ticketId: ticket.id, content, attachments, at: iso(now) }, eventKey),
            now,
          );
          this.store.setDedupe(msg.channel, msg.dedupeKey, ticket.id, now);
          if (THREADED_CHANNELS.has(msg.channel)) for (const id of msg.channelMessageIds) this.store.addRef(id, ticket.id);
          if (msg.consumesPartsGroup) this.store.dropParts(msg.channel, msg.consumesPartsGroup);
          const receipt = followupText(this.config, ticket);
          if (this.activeReceipts.has(msg.channel) && !opts.acknowledgedVia) {
            this.addOutboundRow(`notice:${stableId(eventKey)}`, 'notice', msg.channel, ticket.id, receipt, msg, ticket.number, now);
          }
          return { status: 'followup', ticket, receipt };
        }
      }

      const id = keyedId ?? stableId('ticket', msg.channel, msg.dedupeKey, String(now));
      const day = this.dayFormat.format(new Date(now)).replaceAll('-', '');
      const number = `${day}-${String(this.store.nextNumber(day)).padStart(6, '0')}`;

      let repeatOf: string | null = null;
      let grams: Map<string, number> | null = null;
      for (const earlier of this.store.recentByCitizen(citizenKey, now - this.config.REPEAT_WINDOW)) {
        grams ??= bigrams(matter);
        if (dice(bigrams(earlier.matter), grams) >= SAME_MATTER) {
          repeatOf = earlier.repeat_of ?? earlier.id;
          break;
        }
      }

      const respondBy = now + deadlineMs;
      const parsed = TicketV1.safeParse({
        schemaVersion: 1,
        id,
        number,
        channel: msg.channel,
        channelMessageIds: msg.channelMessageIds,
        receivedAt: iso(now),
        sentAt: validDate(msg.sentAt),
        citizen: {
          channelUserId: msg.citizen.channelUserId,
          phone: msg.citizen.phone ?? null,
          email: msg.citizen.email ?? null,
          name: msg.citizen.name ?? null,
        },
        subject,
        content,
        // The URL names the ticket: that is how an intake client shows which of its tickets
        // lets it fetch the file (see the attachments route in http/api.ts).
        attachments: attachments.map((a) => ({ ...a, url: `${a.url}?ticket=${id}` })),
        location: msg.location ?? null,
        category: cls.category,
        language,
        emergency: cls.emergency,
        outOfScope: cls.outOfScope,
        repeatOf,
        deadline: { policy, duration: isoDuration(deadlineMs), respondBy: iso(respondBy) },
        incomplete: msg.incomplete,
        source: msg.source,
      });
      // An adapter built an Inbound the schema refuses (say, a location out of range): that input
      // will never become a ticket however often the upstream retries, so it is permanent.
      if (!parsed.success) {
        throw new GatewayError('INPUT_INVALID', `ticket does not match schema v1: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, { transient: false });
      }
      const ticket: Ticket = parsed.data;

      const ticketJson = JSON.stringify(ticket);
      this.store.insertTicket(
        {
          id,
          number,
          channel: msg.channel,
          citizen_key: citizenKey,
          created_at: now,
          respond_by: respondBy,
          acknowledged_at: opts.acknowledgedVia ? now : null,
          matter,
          repeat_of: repeatOf,
          body: ticketJson,
        },
        raw,
        { kind: 'warning', at: now + Math.round(deadlineMs * this.config.DEADLINE_WARNING_RATIO) },
      );
      if (msg.dedupeWindowMs) this.store.setDedupe(msg.channel, msg.dedupeKey, id, now);
      if (THREADED_CHANNELS.has(msg.channel)) for (const ref of msg.channelMessageIds) this.store.addRef(ref, id);
      this.store.addOutbox({ ...ticketCreated(ticket), json: ticketJson, ticketRef: id }, now);
      if (msg.consumesPartsGroup) this.store.dropParts(msg.channel, msg.consumesPartsGroup);

      const receipt = receiptText(this.config, ticket, policy);
      if (opts.acknowledgedVia) {
        this.store.addOutbox(ticketEvent('acknowledged', ticket, { ticketId: id, number, at: iso(now), via: opts.acknowledgedVia }), now);
      } else if (this.activeReceipts.has(msg.channel)) {
        this.addOutboundRow(`receipt:${id}`, 'receipt', msg.channel, id, receipt, ticket, number, now);
      }
      return { status: 'created', ticket, receipt };
    });

    this.metrics.received.inc({ channel: msg.channel, status: result.status });
    if (result.status === 'created') {
      const t = result.ticket;
      this.hooks.deadlineAdded(Date.parse(t.receivedAt) + Math.round(deadlineMs * this.config.DEADLINE_WARNING_RATIO));
      this.logger.info(
        { ticketId: t.id, number: t.number, channel: t.channel, category: t.category, emergency: t.emergency?.service ?? null, repeatOf: t.repeatOf },
        'ticket accepted',
      );
    } else {
      this.logger.debug({ ticketId: result.status === 'rejected' ? null : result.ticket.id, status: result.status }, 'input matched an existing ticket');
    }
    if (this.activeReceipts.has(msg.channel) && result.status !== 'duplicate') this.hooks.outboundAdded();
    return result;
  }

  private addOutboundRow(
    id: string,
    kind: OutboundMessage['kind'],
    channel: Channel,
    ticketId: string | null,
    text: string,
    from: Pick<Inbound, 'citizen' | 'source' | 'subject'>,
    number: string | null,
    now: number,
  ): void {
    const target = { citizen: from.citizen, source: from.source, subject: from.subject, ticketNumber: number };
    this.store.addOutbound({ id, ticket_id: ticketId, channel, kind, text, target: JSON.stringify(target), next_at: now, created_at: now });
  }

  private async rejectEmpty(msg: Inbound): Promise<AcceptResult> {
    const notice = this.config.EMPTY_NOTICE_ZH;
    const active = this.activeReceipts.has(msg.channel);
    await this.store.run(() => {
      const now = this.clock.now();
      if (msg.consumesPartsGroup) this.store.dropParts(msg.channel, msg.consumesPartsGroup);
      const seen = this.store.getDedupe(msg.channel, `empty:${msg.dedupeKey}`);
      if (seen) return;
      this.store.setDedupe(msg.channel, `empty:${msg.dedupeKey}`, '', now);
      this.writeRejected({ channel: msg.channel, reason: 'empty', detail: 'no content and no attachment', raw: msg.raw }, now);
      if (active) this.addOutboundRow(`notice:${stableId('empty', msg.channel, msg.dedupeKey)}`, 'notice', msg.channel, null, notice, msg, null, now);
    });
    this.metrics.rejected.inc({ channel: msg.channel, reason: 'empty' });
    if (active) this.hooks.outboundAdded();
    return { status: 'rejected', reason: 'empty', receipt: notice };
  }

  private writeRejected(input: RejectInput, now: number): void {
    const id = stableId('rejected', input.channel, input.reason, String(now), String(Math.random()));
    this.store.addOutbox(intakeRejected(input.channel, { reason: input.reason, detail: input.detail, receivedAt: iso(now), ...encodeRaw(input.raw) }, id), now);
  }

  async reject(input: RejectInput): Promise<void> {
    await this.store.run(() => this.writeRejected(input, this.clock.now()));
    this.metrics.rejected.inc({ channel: input.channel, reason: input.reason });
    this.logger.warn({ channel: input.channel, reason: input.reason, detail: input.detail }, 'input rejected');
  }

  async acknowledged(ticketId: string, via: string): Promise<void> {
    await this.store.run(() => {
      const now = this.clock.now();
      const row = this.store.getTicketRow(ticketId);
      if (!row) throw new GatewayError('NOT_FOUND', `no ticket ${ticketId}`);
      if (!this.store.setAcknowledged(ticketId, now)) return;
      const t = JSON.parse(row.body) as Ticket;
      this.store.addOutbox(ticketEvent('acknowledged', t, { ticketId, number: row.number, at: iso(now), via }), now);
    });
  }

  async deliveryReport(channel: Channel, upstreamId: string, status: string): Promise<boolean> {
    return this.store.run(() => this.store.outboundDelivery(channel, upstreamId, status));
  }

  state(channel: Channel): ChannelState {
    const store = this.store;
    const clock = this.clock;
    return {
      get: async (key) => store.kvGet(channel, key),
      set: (key, value) => store.run(() => store.kvSet(channel, key, value)),
      putPart: (group, index, data, meta) =>
        store.run((): StoredPart[] => {
          store.putPart(channel, group, index, data, meta, clock.now());
          return store.getParts(channel, group);
        }),
      getParts: async (group) => store.getParts(channel, group),
      dropParts: (group) => store.run(() => store.dropParts(channel, group)),
      staleGroups: async (before, limit) => store.staleGroups(channel, before.getTime(), limit),
    };
  }

  async getTicket(id: string): Promise<Ticket | null> {
    const row = this.store.getTicketRow(id);
    return row ? (JSON.parse(row.body) as Ticket) : null;
  }

  getTicketByNumber(number: string): Ticket | null {
    const row = this.store.getTicketRowByNumber(number);
    return row ? (JSON.parse(row.body) as Ticket) : null;
  }

  ticketStatus(id: string): TicketStatus | null {
    const row: TicketRow | undefined = this.store.getTicketRow(id);
    if (!row) return null;
    const replies = this.store
      .lastReplies(id, STATUS_REPLIES)
      .map((o) => ({ replyId: replyIdOf(o), text: o.text, state: o.state, at: iso(o.created_at), sentAt: o.sent_at ? iso(o.sent_at) : null }));
    return {
      state: row.responded_at ? 'responded' : row.acknowledged_at ? 'acknowledged' : 'received',
      respondBy: iso(row.respond_by),
      acknowledgedAt: row.acknowledged_at ? iso(row.acknowledged_at) : null,
      respondedAt: row.responded_at ? iso(row.responded_at) : null,
      breached: row.breached === 1,
      replies,
    };
  }

  /**
   * A downstream answer to the citizen. Idempotent by replyId within the ticket:
   * 'created' the first time, 'duplicate' after (also once the ticket is full).
   * Unknown ticket → NOT_FOUND; past REPLY_MAX_PER_TICKET → REPLY_LIMIT.
   */
  async addReply(ticketId: string, replyId: string, text: string): Promise<'created' | 'duplicate'> {
    const r = await this.store.run((): 'created' | 'duplicate' => {
      const now = this.clock.now();
      const row = this.store.getTicketRow(ticketId);
      if (!row) throw new GatewayError('NOT_FOUND', `no ticket ${ticketId}`);
      const id = replyRowId(ticketId, replyId);
      if (this.store.getOutbound(id)) return 'duplicate';
      // Bounds what one ticket can cost: every reply is a message to the citizen and a row in its status.
      const max = this.config.REPLY_MAX_PER_TICKET;
      if (this.store.replyCount(ticketId) >= max) {
        throw new GatewayError('REPLY_LIMIT', `ticket ${row.number} already has ${max} replies, the most one ticket takes`, { transient: false });
      }
      const t = JSON.parse(row.body) as Ticket;
      const target = { citizen: t.citizen, source: t.source, subject: t.subject, ticketNumber: t.number };
      const created = this.store.addOutbound({
        id,
        ticket_id: ticketId,
        channel: t.channel,
        kind: 'reply',
        text,
        target: JSON.stringify(target),
        next_at: now,
        created_at: now,
      });
      return created ? 'created' : 'duplicate';
    });
    if (r === 'created') this.hooks.outboundAdded();
    return r;
  }
}
