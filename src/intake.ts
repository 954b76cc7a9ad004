import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Clock } from './clock.js';
import { THREADED_CHANNELS, type AcceptOptions, type AcceptResult, type Channel, type TicketStatus, type ChannelState, type Inbound, type Intake, type OutboundMessage, type RejectInput } from './channels/types.js';
import { GatewayError } from './errors.js';
import { TicketV1, stableId, ticketIdFor, type Attachment, type Ticket } from './ticket.js';
import { truncate } from './normalize/text.js';
import { cleanInbound } from './normalize/inbound.js';
import { classify, type Rules } from './normalize/rules.js';
import { detectLanguage } from './normalize/language.js';
import { SAME_MATTER, bigrams, dice } from './normalize/similarity.js';
import { isoDuration } from './duration.js';
import type { AttachmentFiles, NewTicket, OutboundInsert, OutboxInsert, Store, UnitWrites } from './store/types.js';
import { acknowledged, followupEvent, outboundId, replyIdOf, ticketState } from './lifecycle.js';
import { encodeRaw, intakeRejected, ticketCreated, ticketEvent } from './publish/messages.js';
import type { Metrics } from './metrics.js';
import { receiptText, followupText } from './receipts.js';
import { STATUS_QUERY_CHANNELS, statusAnswerText, statusNotFoundText, statusQueryNumber } from './channels/status-query.js';

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
/** Longest status answer: one UCS-2 SMS on SMS; elsewhere room for most replies in full. */
const STATUS_ANSWER_CHARS: Partial<Record<Channel, number>> = { sms: 70 };
const STATUS_ANSWER_DEFAULT = 300;

/** Who the citizen is, for `repeatOf` and for whose tickets a status query may see: phone, else e-mail, else the channel's user id. */
export function citizenKeyOf(msg: Pick<Inbound, 'channel' | 'citizen'>): string {
  return msg.citizen.phone ?? msg.citizen.email?.toLowerCase() ?? `${msg.channel}:${msg.citizen.channelUserId}`;
}

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
    private readonly store: Store,
    private readonly attachments: AttachmentFiles,
    private readonly config: Config,
    private readonly rules: Rules,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.dayFormat = new Intl.DateTimeFormat('en-CA', { timeZone: config.TIMEZONE, year: 'numeric', month: '2-digit', day: '2-digit' });
  }

  /** The local day (YYYYMMDD) of the last minute asked about: Intl formatting per ticket was ≈1 % of its CPU. */
  private dayMemo = { minute: Number.NaN, day: '' };

  /** Every time zone's day starts on a whole minute, so one formatting per minute is exact. */
  private dayOf(now: number): string {
    const minute = Math.floor(now / 60_000);
    if (minute !== this.dayMemo.minute) this.dayMemo = { minute, day: this.dayFormat.format(new Date(now)).replaceAll('-', '') };
    return this.dayMemo.day;
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
    // Before dedupe and numbering: a status query must never cost a ticket.
    if (STATUS_QUERY_CHANNELS.has(msg.channel) && !subject && msg.attachments.length === 0 && !msg.location) {
      const number = statusQueryNumber(content);
      if (number) return this.answerQuery(msg, number);
    }
    // Files first: a ticket must never name an attachment that is not on disk.
    const attachments: Attachment[] = [];
    for (const a of msg.attachments) attachments.push(await this.attachments.save(a));

    const cls = classify(this.rules, subject, content);
    const language = detectLanguage(content || subject || '');
    const { policy, ms: deadlineMs } = this.policyFor(msg.channel);
    const raw = typeof msg.raw === 'string' ? Buffer.from(msg.raw, 'utf8') : msg.raw;
    const citizenKey = citizenKeyOf(msg);
    // The first 200 characters say what the matter is; more only makes every row and comparison heavier.
    const matter = truncate(`${subject ?? ''} ${content}`.trim(), 200);

    const keyedId = msg.dedupeWindowMs ? null : ticketIdFor(msg.channel, msg.dedupeKey);
    const outcome = await this.store.accept({
      channel: msg.channel,
      dedupeKey: msg.dedupeKey,
      dedupeWindowMs: msg.dedupeWindowMs ?? null,
      // Without a window the ticket id is a function of the dedupe key, so the ticket row
      // itself records that the message was seen; a dedupe row is written only for what
      // has no such id (windowed keys, follow-ups, refused empties).
      keyedId,
      threadRefs: msg.threadRefs ?? [],
      citizenKey,
      repeatWindowMs: this.config.REPEAT_WINDOW,
      partsGroup: msg.consumesPartsGroup ?? null,
      raw,
      dayOf: (now) => this.dayOf(now),
      followup: (open, now): UnitWrites => {
        const eventKey = `${msg.channel}:${msg.dedupeKey}`;
        const ticket = open.ticket;
        return {
          outbox: [followupEvent(ticket, { content, attachments, at: iso(now) }, eventKey)],
          refs: THREADED_CHANNELS.has(msg.channel) ? msg.channelMessageIds.map((ref) => ({ ref, ticketId: ticket.id })) : [],
          outbound:
            this.activeReceipts.has(msg.channel) && !opts.acknowledgedVia
              ? [this.outboundRow(outboundId.notice(stableId(eventKey)), 'notice', msg.channel, ticket.id, followupText(this.config, ticket), msg, ticket.number, now)]
              : [],
        };
      },
      create: ({ now, number, recent }): NewTicket => {
        let repeatOf: string | null = null;
        let grams: Map<string, number> | null = null;
        for (const earlier of recent) {
          grams ??= bigrams(matter);
          if (dice(bigrams(earlier.matter), grams) >= SAME_MATTER) {
            repeatOf = earlier.repeatOf ?? earlier.id;
            break;
          }
        }
        const ticketId = keyedId ?? stableId('ticket', msg.channel, msg.dedupeKey, String(now));
        const respondBy = now + deadlineMs;
        const parsed = TicketV1.safeParse({
          schemaVersion: 1,
          id: ticketId,
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
          attachments: attachments.map((a) => ({ ...a, url: `${a.url}?ticket=${ticketId}` })),
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
        const json = JSON.stringify(ticket);
        const outbox: OutboxInsert[] = [{ ...ticketCreated(ticket), json, ticketRef: ticketId }];
        const outbound: OutboundInsert[] = [];
        if (opts.acknowledgedVia) {
          outbox.push(ticketEvent('acknowledged', ticket, { ticketId, number, at: iso(now), via: opts.acknowledgedVia }));
        } else if (this.activeReceipts.has(msg.channel)) {
          outbound.push(this.outboundRow(outboundId.receipt(ticketId), 'receipt', msg.channel, ticketId, receiptText(this.config, ticket, policy), ticket, number, now));
        }
        return {
          id: ticketId,
          number,
          citizenKey,
          createdAt: now,
          respondBy,
          acknowledgedAt: opts.acknowledgedVia ? now : null,
          matter,
          repeatOf,
          ticket,
          json,
          due: { kind: 'warning', at: now + Math.round(deadlineMs * this.config.DEADLINE_WARNING_RATIO) },
          dedupe: Boolean(msg.dedupeWindowMs),
          outbox,
          outbound,
          refs: THREADED_CHANNELS.has(msg.channel) ? msg.channelMessageIds.map((ref) => ({ ref, ticketId })) : [],
        };
      },
    });
    const ticket = outcome.record.ticket;
    const result: Exclude<AcceptResult, { status: 'query' }> =
      outcome.status === 'followup'
        ? { status: 'followup', ticket, receipt: followupText(this.config, ticket) }
        : { status: outcome.status, ticket, receipt: receiptText(this.config, ticket, policy) };

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

  private outboundRow(
    id: string,
    kind: OutboundMessage['kind'],
    channel: Channel,
    ticketId: string | null,
    text: string,
    from: Pick<Inbound, 'citizen' | 'source' | 'subject'>,
    number: string | null,
    now: number,
  ): OutboundInsert {
    const target = { citizen: from.citizen, source: from.source, subject: from.subject, ticketNumber: number };
    return { id, ticketId, channel, kind, text, target, nextAt: now, createdAt: now };
  }

  /**
   * Answers a status query on the channel it came by. Only the sender's own tickets
   * are described (the same citizen key as intake, or the same user of the same
   * channel: a Telegram ticket that carried a shared phone is still that chat's);
   * any other number gets the answer of an unknown one, so numbers, which are
   * guessable, reveal nothing. Active-receipt channels get a notice row whose id
   * and dedupe key derive from the upstream message, so a redelivered query is
   * answered once; the caller acknowledges upstream after that row is durable.
   */
  private async answerQuery(msg: Inbound, number: string): Promise<AcceptResult> {
    const now = this.clock.now();
    const record = await this.store.getTicketByNumber(number);
    const own =
      record !== null &&
      (record.citizenKey === citizenKeyOf(msg) || (record.channel === msg.channel && record.ticket.citizen.channelUserId === msg.citizen.channelUserId));
    let text = statusNotFoundText(number);
    if (own) {
      const replies = await this.store.outboundOfTicket(record.id, 1, 'reply');
      text = statusAnswerText(
        {
          number: record.number,
          state: ticketState(record),
          respondBy: record.respondBy,
          breached: record.breached,
          latestReply: replies.at(-1)?.text ?? null,
          now,
        },
        STATUS_ANSWER_CHARS[msg.channel] ?? STATUS_ANSWER_DEFAULT,
      );
    }
    if (this.activeReceipts.has(msg.channel)) {
      // SMS keys repeat when the same text is sent again later: the window's slot makes a
      // later query a new one, while a redelivery inside the window is still answered once.
      const key = msg.dedupeWindowMs ? `status:${msg.dedupeKey}:${Math.floor(now / msg.dedupeWindowMs)}` : `status:${msg.dedupeKey}`;
      const row = this.outboundRow(outboundId.notice(stableId('status', msg.channel, key)), 'notice', msg.channel, null, text, msg, null, now);
      const fresh = await this.store.recordOnce(msg.channel, key, { outbound: [row] }, msg.consumesPartsGroup ?? null);
      if (fresh) this.hooks.outboundAdded();
    }
    this.metrics.received.inc({ channel: msg.channel, status: 'query' });
    this.logger.info({ channel: msg.channel, number, found: own }, 'status query answered');
    return { status: 'query', number, receipt: text };
  }

  private async rejectEmpty(msg: Inbound): Promise<AcceptResult> {
    const notice = this.config.EMPTY_NOTICE_ZH;
    const active = this.activeReceipts.has(msg.channel);
    const now = this.clock.now();
    // One notice per upstream message however often it is delivered.
    await this.store.recordOnce(
      msg.channel,
      `empty:${msg.dedupeKey}`,
      {
        outbox: [this.rejectedMessage({ channel: msg.channel, reason: 'empty', detail: 'no content and no attachment', raw: msg.raw }, now)],
        outbound: active ? [this.outboundRow(outboundId.notice(stableId('empty', msg.channel, msg.dedupeKey)), 'notice', msg.channel, null, notice, msg, null, now)] : [],
      },
      msg.consumesPartsGroup ?? null,
    );
    this.metrics.rejected.inc({ channel: msg.channel, reason: 'empty' });
    if (active) this.hooks.outboundAdded();
    return { status: 'rejected', reason: 'empty', receipt: notice };
  }

  private rejectedMessage(input: RejectInput, now: number): OutboxInsert {
    const id = stableId('rejected', input.channel, input.reason, String(now), String(Math.random()));
    return intakeRejected(input.channel, { reason: input.reason, detail: input.detail, receivedAt: iso(now), ...encodeRaw(input.raw) }, id);
  }

  async reject(input: RejectInput): Promise<void> {
    await this.store.append({ outbox: [this.rejectedMessage(input, this.clock.now())] });
    this.metrics.rejected.inc({ channel: input.channel, reason: input.reason });
    this.logger.warn({ channel: input.channel, reason: input.reason, detail: input.detail }, 'input rejected');
  }

  async acknowledged(ticketId: string, via: string): Promise<void> {
    const r = await this.store.updateTicket(ticketId, acknowledged(via));
    if (!r) throw new GatewayError('NOT_FOUND', `no ticket ${ticketId}`);
  }

  async deliveryReport(channel: Channel, upstreamId: string, status: string): Promise<boolean> {
    return this.store.outboundDelivery(channel, upstreamId, status);
  }

  state(channel: Channel): ChannelState {
    const store = this.store;
    return {
      get: (key) => store.kvGet(channel, key),
      set: (key, value) => store.kvSet(channel, key, value),
      putPart: (group, index, data, meta) => store.putPart(channel, group, index, data, meta),
      getParts: (group) => store.getParts(channel, group),
      dropParts: (group) => store.dropParts(channel, group),
      staleGroups: (before, limit) => store.staleGroups(channel, before.getTime(), limit),
    };
  }

  async getTicket(id: string): Promise<Ticket | null> {
    return (await this.store.getTicket(id))?.ticket ?? null;
  }

  async getTicketByNumber(number: string): Promise<Ticket | null> {
    return (await this.store.getTicketByNumber(number))?.ticket ?? null;
  }

  async ticketStatus(id: string): Promise<TicketStatus | null> {
    const t = await this.store.getTicket(id);
    if (!t) return null;
    const replies = (await this.store.outboundOfTicket(id, STATUS_REPLIES, 'reply')).map((o) => ({ replyId: replyIdOf(o), text: o.text, state: o.state, at: iso(o.createdAt), sentAt: o.sentAt ? iso(o.sentAt) : null }));
    return {
      state: ticketState(t),
      respondBy: iso(t.respondBy),
      acknowledgedAt: t.acknowledgedAt ? iso(t.acknowledgedAt) : null,
      respondedAt: t.respondedAt ? iso(t.respondedAt) : null,
      breached: t.breached,
      replies,
    };
  }

  /**
   * A downstream answer to the citizen. Idempotent by replyId within the ticket:
   * 'created' the first time, 'duplicate' after (also once the ticket is full).
   * Unknown ticket → NOT_FOUND; past REPLY_MAX_PER_TICKET → REPLY_LIMIT.
   */
  async addReply(ticketId: string, replyId: string, text: string): Promise<'created' | 'duplicate'> {
    const t = await this.store.getTicket(ticketId);
    if (!t) throw new GatewayError('NOT_FOUND', `no ticket ${ticketId}`);
    const now = this.clock.now();
    const row = this.outboundRow(outboundId.reply(ticketId, replyId), 'reply', t.channel, ticketId, text, t.ticket, t.number, now);
    // Bounds what one ticket can cost: every reply is a message to the citizen and a row in its status.
    const max = this.config.REPLY_MAX_PER_TICKET;
    const r = await this.store.addReply(row, max);
    if (r === 'full') throw new GatewayError('REPLY_LIMIT', `ticket ${t.number} already has ${max} replies, the most one ticket takes`, { transient: false });
    if (r === 'created') this.hooks.outboundAdded();
    return r;
  }
}
