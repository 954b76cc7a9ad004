import type { Router } from 'express';
import type { Logger } from 'pino';
import type { Channel, Ticket, Location } from '../ticket.js';
import type { Config } from '../config.js';
import type { Clock } from '../clock.js';
import type { FastRoutes } from '../http/fast.js';
import type { ApiAccess } from '../http/auth.js';

export type { Channel, Ticket } from '../ticket.js';

export interface InboundAttachment {
  fileName: string;
  mimeType: string;
  data: Buffer;
}

/**
 * One citizen message as a channel adapter hands it to the intake. Built by the
 * channel's pure `toInbound`/`toTicket` functions from the raw upstream input.
 */
export interface Inbound {
  channel: Channel;
  /**
   * Identity of the upstream message within its channel (WeChat MsgId, Message-ID,
   * update_id, clientMessageId per key, a hash of the SMS bytes…). The ticket id is
   * derived from it, so a retried delivery maps to the same ticket.
   */
  dedupeKey: string;
  /**
   * When set, the dedupe key only counts as "seen" for this long (SMS has no
   * message id: the same bytes from the same sender an hour later are a new message).
   */
  dedupeWindowMs?: number;
  channelMessageIds: string[];
  sentAt: Date | null;
  citizen: { channelUserId: string; phone: string | null; email: string | null; name: string | null };
  subject: string | null;
  /** Plain text. Adapters turn HTML into text with `normalize/text.htmlToText` first. */
  content: string;
  attachments: InboundAttachment[];
  location: Location | null;
  incomplete: boolean;
  /** Channel-specific facts copied to `ticket.source`. */
  source: Record<string, unknown>;
  /** The upstream input as received, kept in the journal for audit. */
  raw: string | Buffer;
  /**
   * Strings that may name an earlier ticket: ticket numbers, Message-IDs of our
   * receipts, In-Reply-To/References. If one resolves to an open ticket the message
   * becomes a `ticket.followup` on it instead of a new ticket.
   */
  threadRefs?: string[];
  /** Parts held in ChannelState for this message; deleted in the same transaction that stores the ticket. */
  consumesPartsGroup?: string;
}

export type AcceptResult =
  | { status: 'created'; ticket: Ticket; receipt: string }
  | { status: 'duplicate'; ticket: Ticket; receipt: string }
  | { status: 'followup'; ticket: Ticket; receipt: string }
  | { status: 'rejected'; reason: string; receipt: string | null };

export interface AcceptOptions {
  /**
   * The receipt goes out in the adapter's own answer (HTTP 202, WeChat passive
   * reply): `ticket.acknowledged` is journaled in the same commit, with this `via`.
   */
  acknowledgedVia?: string;
}

export interface RejectInput {
  channel: Channel;
  /** Short machine reason: `parse_error`, `empty`, `unsupported_type`, `too_large`, `auto_reply`… */
  reason: string;
  detail: string;
  raw: string | Buffer;
}

export interface Intake {
  /**
   * Dedupe, normalize and journal one message. Resolves only after the ticket (or
   * the rejection) is committed: acknowledge upstream after this, never before.
   * Throws GatewayError `STORE_UNAVAILABLE` (transient) when it cannot store,
   * `SHUTTING_DOWN` once stop has begun.
   */
  accept(msg: Inbound, opts?: AcceptOptions): Promise<AcceptResult>;
  /** Durably record input that cannot become a ticket (`intake.rejected.<channel>`). */
  reject(input: RejectInput): Promise<void>;
  /** The adapter delivered the receipt in-band (WeChat passive reply, HTTP answer). */
  acknowledged(ticketId: string, via: string): Promise<void>;
  /** Record the delivery status the platform reported for one of our outgoing messages. */
  deliveryReport(channel: Channel, upstreamId: string, status: string): Promise<boolean>;
  /** Durable state private to the channel (cursors, message parts). */
  state(channel: Channel): ChannelState;
  /** Lookup by id, for adapters that answer in-band. */
  getTicket(id: string): Promise<Ticket | null>;
  /** Lookup by the human ticket number (status pages, Open311). */
  getTicketByNumber(number: string): Promise<Ticket | null>;
  /** Delivery state and replies of a ticket, as `GET /api/v1/tickets/:id/status` shows it. */
  ticketStatus(id: string): Promise<TicketStatus | null>;
  /** True while the outbox is deeper than the configured high-water mark: pause reading upstream. */
  backlogHigh(): boolean;
}

export interface TicketStatus {
  state: 'received' | 'acknowledged' | 'responded';
  respondBy: string;
  acknowledgedAt: string | null;
  respondedAt: string | null;
  breached: boolean;
  replies: { replyId: string; text: string; state: string; at: string; sentAt: string | null }[];
}

export interface StoredPart {
  index: number;
  data: Buffer;
  meta: string;
  receivedAt: Date;
}

/** Durable per-channel state. Keys are scoped to the channel. */
export interface ChannelState {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  /**
   * Keep one part of a multi-part upstream message (an SMS segment). Idempotent per
   * (group, index). Resolves after commit with every part held for the group.
   */
  putPart(group: string, index: number, data: Buffer, meta: string): Promise<StoredPart[]>;
  getParts(group: string): Promise<StoredPart[]>;
  dropParts(group: string): Promise<void>;
  /** Groups whose first part arrived before `before`, oldest first. */
  staleGroups(before: Date, limit: number): Promise<string[]>;
}

export type OutboundKind = 'receipt' | 'reply' | 'notice';

/** Something to send to a citizen on the channel they used. */
export interface OutboundMessage {
  /** Unique: `receipt:<ticketId>`, `reply:<ticketId>:<replyId>`, `notice:<…>`. Never sent twice once sent. */
  id: string;
  kind: OutboundKind;
  channel: Channel;
  text: string;
  /** Null for a notice about input that did not become a ticket. */
  ticketId: string | null;
  ticketNumber: string | null;
  citizen: Inbound['citizen'];
  subject: string | null;
  /** `ticket.source` (or the rejected input's source): routing facts such as the SMS extension or the mail Message-ID. */
  source: Record<string, unknown>;
  /** Upstream ids of earlier outgoing messages on this ticket (mail Message-IDs for threading). */
  threadIds: string[];
  attempt: number;
}

export interface SendResult {
  /** How it went out, e.g. `smpp`, `smtp`, `customer-service-api`. */
  via: string;
  /** The platform's id of what we sent (SMPP message_id, mail Message-ID…), for delivery reports and threading. */
  upstreamId: string | null;
}

/**
 * Work only one instance of the gateway may do at a time (reading IMAP, Telegram
 * long polling), when several share one store.
 */
export interface ChannelLease {
  readonly name: string;
  readonly held: boolean;
  /** Resolves true once this instance holds the lease (retrying while another does), false if cancelled first. */
  acquire(cancelled: () => boolean): Promise<boolean>;
  /** Called when the lease is lost: stop the work at once; call acquire() again to resume. */
  onLost(fn: () => void): void;
  release(): Promise<void>;
}

export interface AdapterContext {
  intake: Intake;
  /** A lease by name (one per kind of exclusive work), held by this instance once acquired. */
  lease(name: string): ChannelLease;
  config: Config;
  logger: Logger;
  clock: Clock;
  /** Mounted at `/` on the gateway's HTTP server, before it listens. */
  http: Router;
  /**
   * Routes the HTTP server answers before Express sees the request (hot paths). A
   * handler declines unusual requests, so the same route must also be on `http`.
   */
  fast: FastRoutes;
  /** API keys of both roles and the per-key rate, shared with the ticket API (contract section 5). */
  access: ApiAccess;
}

export interface ChannelAdapter {
  readonly channel: Channel;
  /**
   * `active`: the gateway calls `send` with the receipt after commit.
   * `passive`: the adapter answers in-band (WeChat passive reply, HTTP 202) and
   * calls `intake.acknowledged`.
   */
  readonly receiptMode: 'active' | 'passive';
  start(ctx: AdapterContext): Promise<void>;
  /**
   * Send a receipt, reply or notice. Throw GatewayError: transient codes are retried
   * with backoff, permanent ones become `reply.failed`. Keep the vendor's answer in `detail`.
   */
  send(msg: OutboundMessage): Promise<SendResult>;
  /** Stop taking input, drain in-flight work, close connections. Idempotent. */
  stop(): Promise<void>;
  /** Facts for `/readyz` (bound, connected, paused…). */
  status?(): Record<string, unknown>;
}

/**
 * Channels whose messages cite earlier ones by upstream id (mail: In-Reply-To and
 * References name Message-IDs). Only their ids, and the ids of what we send on
 * them, are kept as refs; on other channels nobody can cite an id, so storing
 * one would be a write per ticket for nothing.
 */
export const THREADED_CHANNELS: ReadonlySet<Channel> = new Set<Channel>(['mailbox']);
