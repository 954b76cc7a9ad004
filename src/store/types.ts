import type { Attachment, Channel, Ticket } from '../ticket.js';

/**
 * The store, as the rest of the gateway sees it. Every method that writes is one
 * unit of work that a backend runs in one transaction with few round trips: the
 * embedded SQLite journal group-commits units queued in the same turn, PostgreSQL
 * runs each in a transaction of its own. Decisions that need what is stored (is
 * this a duplicate, which number, which earlier ticket is on the same matter) are
 * made inside the unit; what to write is decided by pure callbacks the caller
 * passes in (`AcceptUnit.create`, `TicketChange` builders in `lifecycle.ts`), so
 * the store holds no ticket rules and its callers hold no SQL.
 *
 * Records are camelCase; no column name leaves a backend.
 */

export type StoreKind = 'sqlite' | 'postgres';

/** A file as a citizen sent it, before it is kept. */
export interface InboundAttachment {
  fileName: string;
  mimeType: string;
  data: Buffer;
}

/** One part of a multi-part upstream message (an SMS segment), kept until the message is whole. */
export interface StoredPart {
  index: number;
  data: Buffer;
  meta: string;
  receivedAt: Date;
}


/** A message to publish, journaled in the same unit as the change it reports. */
export interface OutboxInsert {
  routingKey: string;
  messageId: string;
  type: string;
  headers: Record<string, unknown>;
  body: unknown;
  /** `body` already serialized. */
  json?: string;
  /** The body is this ticket's stored JSON: a backend may point at it instead of keeping a second copy. */
  ticketRef?: string;
}

/** A journaled message as the relay publishes it. */
export interface OutboxMessage {
  seq: number;
  routingKey: string;
  messageId: string;
  type: string;
  headers: Record<string, unknown>;
  body: string;
  createdAt: number;
}

/** What the outbox holds and who holds it, for operators (`intake-gateway outbox`). */
export interface OutboxSummary {
  /** Rows journaled and not yet confirmed by the broker. */
  depth: number;
  /** When the oldest row was journaled (ms), null when the outbox is empty. */
  oldestAt: number | null;
  oldestRoutingKey: string | null;
  /** Rows a relay holds under a live lease (shared store; 0 for the embedded one, whose relay holds rows in memory). */
  taken: number;
  /** Rows taken by an instance whose lease lapsed: they wait for another relay to take them over. */
  lapsed: number;
}

export type OutboundKind = 'receipt' | 'reply' | 'notice';
export type OutboundState = 'pending' | 'sent' | 'failed';

/** Where an outgoing message goes: the citizen and routing facts of the ticket or input it answers. */
export interface OutboundTarget {
  citizen: Ticket['citizen'];
  source: Record<string, unknown>;
  subject: string | null;
  ticketNumber: string | null;
}

export interface OutboundInsert {
  /** Unique: see `outboundId` in lifecycle.ts. */
  id: string;
  ticketId: string | null;
  channel: Channel;
  kind: OutboundKind;
  text: string;
  target: OutboundTarget;
  nextAt: number;
  createdAt: number;
}

export interface OutboundRecord extends OutboundInsert {
  state: OutboundState;
  attempts: number;
  sentAt: number | null;
  via: string | null;
  upstreamId: string | null;
  delivery: string | null;
  error: string | null;
}

/** A stored ticket: its JSON (parsed once, here) and the lifecycle facts kept beside it. */
export interface TicketRecord {
  id: string;
  number: string;
  channel: Channel;
  citizenKey: string;
  createdAt: number;
  respondBy: number;
  acknowledgedAt: number | null;
  respondedAt: number | null;
  breached: boolean;
  repeatOf: string | null;
  ticket: Ticket;
  json: string;
}

/** What one unit writes besides its main row. */
export interface UnitWrites {
  outbox?: OutboxInsert[];
  outbound?: OutboundInsert[];
  /** Upstream ids that name the ticket from now on (mail Message-IDs). */
  refs?: { ref: string; ticketId: string }[];
}

/** An earlier ticket of the same citizen, newest first, for `repeatOf`. */
export interface RecentTicket {
  id: string;
  matter: string;
  repeatOf: string | null;
}

export interface NewTicket extends UnitWrites {
  id: string;
  number: string;
  citizenKey: string;
  createdAt: number;
  respondBy: number;
  acknowledgedAt: number | null;
  matter: string;
  repeatOf: string | null;
  ticket: Ticket;
  json: string;
  /** The ticket's first deadline event. */
  due: { at: number; kind: DeadlineKind };
  /** Write a dedupe row (only keys whose ticket id does not already encode them need one). */
  dedupe: boolean;
}

/**
 * Accepting one inbound message, decided and written in one unit: a duplicate of
 * what was seen (by dedupe key, within its window), a follow-up on an open ticket
 * it names, or a new ticket.
 */
export interface AcceptUnit {
  channel: Channel;
  dedupeKey: string;
  /** The key counts as seen only this long (SMS); null = forever. */
  dedupeWindowMs: number | null;
  /** The ticket id the key implies when it has no window (the ticket row is then the dedupe record). */
  keyedId: string | null;
  /** Ticket numbers and upstream ids that may name an open ticket. */
  threadRefs: string[];
  citizenKey: string;
  /** How far back `recent` reaches. */
  repeatWindowMs: number;
  /** Parts held for this message, dropped in the same unit. */
  partsGroup: string | null;
  /** The upstream input as received, kept for audit. */
  raw: Buffer;
  /** The local day (YYYYMMDD) that numbers a ticket accepted at `now`. */
  dayOf(now: number): string;
  /** Pure: what a follow-up on the open ticket `open` writes. */
  followup(open: TicketRecord, now: number): UnitWrites;
  /**
   * Pure: the new ticket. `recent` yields the citizen's tickets within the repeat
   * window, newest first, read lazily. Throws a permanent GatewayError when the
   * input cannot be a ticket; the unit then writes nothing.
   */
  create(ctx: { now: number; number: string; recent: Iterable<RecentTicket> }): NewTicket;
}

export type AcceptOutcome =
  | { status: 'created'; record: TicketRecord; now: number }
  | { status: 'duplicate'; record: TicketRecord; now: number }
  | { status: 'followup'; record: TicketRecord; now: number };

/**
 * A change to one ticket, computed from what is stored (lifecycle.ts). Null = no
 * change. Fields left out stay as they are.
 */
export interface TicketChange extends UnitWrites {
  acknowledgedAt?: number;
  respondedAt?: number;
  breached?: true;
  /** Cancel the deadline events that have not fired. */
  clearDue?: true;
}

export type DeadlineKind = 'warning' | 'breach';

export interface DueDeadline {
  ticketId: string;
  kind: DeadlineKind;
  dueAt: number;
  respondBy: number;
}

/** What firing one due deadline writes, decided by the scheduler. */
export interface FiredDeadline extends TicketChange {
  /** The event that fired (a warning whose breach is due too fires as the breach). */
  kind: DeadlineKind;
  /** The ticket's next event, or null when it was the last. */
  next: { kind: 'breach'; at: number } | null;
}

export type ReplyOutcome = 'created' | 'duplicate' | 'full';

/** What the operations page shows of the store, read in one call (the page caches it for a second). */
export interface OpsSummary {
  /** Tickets whose deadline is still running. */
  open: number;
  /** Of those, the ones past their warning time (warning fired, or due and not fired yet). */
  pastWarning: number;
  /** Tickets breached with their deadline (`respondBy`) at or after `dayStart`. */
  breachedToday: number;
  /** The next deadline event (warning or breach) due, or null. */
  nextDue: number | null;
  /** `createdAt` of the oldest outbox row not yet confirmed (cluster-wide where shared), or null when empty. */
  outboxOldestAt: number | null;
}

/**
 * Where a write's time went between being queued and being durable: what a slow
 * request's wait in the store is made of. Times in milliseconds.
 */
export interface CommitTiming {
  /** Units in the commit (the group commit's batch; 1 where each unit is its own transaction). */
  units: number;
  /** The oldest unit's wait from being queued until its commit started. */
  queuedMs: number;
  /** Running the units and committing: on the event loop for SQLite, round trips for PostgreSQL. */
  commitMs: number;
  /** From commit until durable: the WAL fsync, including waiting for one already in flight. */
  durableMs: number;
}

/** A checkpoint: how long it took (off the event loop) and how many pages it copied. */
export interface CheckpointTiming {
  ms: number;
  frames: number;
  busy: boolean;
  /** On the event loop rather than the checkpoint's own thread. */
  onLoop?: boolean;
}

export interface OutboundResult {
  via: string;
  upstreamId: string | null;
}

export interface Store {
  readonly kind: StoreKind;

  // ---- intake -----------------------------------------------------------
  accept(unit: AcceptUnit): Promise<AcceptOutcome>;
  /**
   * Writes `writes` unless `key` was recorded before for `channel` (then
   * nothing); true when written. For input that is refused once per upstream
   * message (an empty message gets one notice however often it is delivered).
   */
  recordOnce(channel: Channel, key: string, writes: UnitWrites, partsGroup?: string | null): Promise<boolean>;
  /** Writes journal rows that change no ticket (an `intake.rejected`). */
  append(writes: UnitWrites): Promise<void>;

  // ---- tickets ----------------------------------------------------------
  getTicket(id: string): Promise<TicketRecord | null>;
  getTicketByNumber(number: string): Promise<TicketRecord | null>;
  /** Tickets received at or after `since`, oldest first, at most `limit` (operations: replay, look-ups). */
  listTickets(q: { since: number; channel?: Channel; limit: number }): Promise<TicketRecord[]>;
  /**
   * Reads the ticket and applies `change(record, now)` to it in one unit (the
   * row is locked where the backend can). Null when there is no such ticket;
   * `changed` false when `change` returned null.
   */
  updateTicket(id: string, change: (t: TicketRecord, now: number) => TicketChange | null): Promise<{ record: TicketRecord; changed: boolean } | null>;

  // ---- outgoing messages to citizens -----------------------------------
  /**
   * Adds a reply to its ticket: 'duplicate' when the id exists, 'full' when the
   * ticket already holds `maxPerTicket` replies. Unknown ticket → NOT_FOUND.
   */
  addReply(row: OutboundInsert, maxPerTicket: number): Promise<ReplyOutcome>;
  /**
   * Pending rows due by `now` that no live sender holds, taken by `owner` for
   * `leaseMs` (another instance takes them once the lease lapses).
   */
  claimOutbound(now: number, limit: number, owner: string, leaseMs: number): Promise<OutboundRecord[]>;
  /** Extends `owner`'s claim on rows it is still sending (a slow send must not be taken by another sender). */
  renewOutbound(owner: string, ids: string[], leaseMs: number): Promise<void>;
  /** The row went out: record it, and apply what it means for its ticket (lifecycle). */
  outboundSent(id: string, result: OutboundResult, change: ((t: TicketRecord, now: number) => TicketChange | null) | null): Promise<void>;
  outboundRetry(id: string, nextAt: number, error: string): Promise<void>;
  /** Final failure: the row is failed and `writes` (the `reply.failed` event) journaled with it. */
  outboundFailed(id: string, error: string, writes: UnitWrites): Promise<void>;
  /** A delivery report for something sent; false when nothing matched. */
  outboundDelivery(channel: Channel, upstreamId: string, status: string): Promise<boolean>;
  /** A ticket's outgoing rows (of one kind, if given), oldest first, at most `limit` (the newest ones). */
  outboundOfTicket(ticketId: string, limit: number, kind?: OutboundKind): Promise<OutboundRecord[]>;
  /** The earliest time a pending row is due after `after` (or at all). */
  nextOutboundAfter(after: number): Promise<number | null>;

  // ---- deadlines ----------------------------------------------------------
  /**
   * Claims the deadline events due by `now` (each exactly once, cluster-wide),
   * lets `decide` say what firing each writes, and commits them together.
   */
  fireDue(now: number, limit: number, decide: (due: DueDeadline, t: TicketRecord) => FiredDeadline | null): Promise<{ due: DueDeadline; fired: FiredDeadline }[]>;
  nextDeadline(): Promise<number | null>;
  openDeadlines(): Promise<number>;
  /** Deadline and outbox counts for the operations page, as of `now`; `dayStart` is the start of the local day. */
  opsSummary(now: number, dayStart: number): Promise<OpsSummary>;

  // ---- outbox relay -------------------------------------------------------
  /**
   * Up to `limit` journaled messages this instance has not taken yet, in order,
   * only once they are durable. Taken rows are this relay's until confirmed or
   * released; a dead instance's rows are taken over after its lease lapses.
   */
  takeOutbox(limit: number): Promise<OutboxMessage[]>;
  /** Confirmed by the broker: the rows leave the outbox. */
  confirmOutbox(seqs: number[]): Promise<void>;
  /**
   * Rows taken and not confirmed are taken again: those of `seqs` (rows the relay read
   * and will not publish), or all of them (after a broker reconnect). A take after a
   * release may also return rows the relay still has in flight; it skips those.
   */
  releaseOutbox(seqs?: number[]): Promise<void>;
  /** About how many rows `takeOutbox` could return now. */
  readyCount(): number;
  /** True while journaled rows wait for the relay (for shutdown's drain). */
  hasUntaken(): Promise<boolean>;
  /** Outbox depth as last known (cluster-wide where shared). */
  outboxDepth(): number;
  /** Depth, oldest row and lease state, read from the store itself (not this process's view of it). */
  outboxSummary(): Promise<OutboxSummary>;
  /** Called after a commit that added outbox rows (on PostgreSQL also when another instance did). */
  onOutbox: () => void;
  /** Told how long each commit took (for the latency metrics); optional for a backend. */
  onCommit?: (t: CommitTiming) => void;
  /** Told of each checkpoint the backend runs itself (SQLite's WAL, on its own thread). */
  onCheckpoint?: (t: CheckpointTiming) => void;
  /** Told of trouble in the backend's own background work, which no caller would see. */
  onStoreWarning?: (message: string) => void;

  // ---- channel state ------------------------------------------------------
  kvGet(channel: Channel | '_store', key: string): Promise<string | null>;
  kvSet(channel: Channel | '_store', key: string, value: string): Promise<void>;
  /** Keeps one part (idempotent per group and index) and returns every part held for the group. */
  putPart(channel: Channel, group: string, index: number, data: Buffer, meta: string): Promise<StoredPart[]>;
  getParts(channel: Channel, group: string): Promise<StoredPart[]>;
  dropParts(channel: Channel, group: string): Promise<void>;
  staleGroups(channel: Channel, before: number, limit: number): Promise<string[]>;

  // ---- leases (one reader of IMAP, Telegram polling) -----------------------
  /** Takes or renews `name` for `owner` for `ttlMs`; false while another owner holds it. */
  acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean>;
  releaseLease(name: string, owner: string): Promise<void>;

  // ---- operations ---------------------------------------------------------
  /**
   * Resolves once every unit resolved so far is durable. Outgoing sends wait for
   * it: a row read before its commit was synced must not reach a citizen first.
   */
  whenDurable(): Promise<void>;
  /** A real write, for /readyz: null when the store takes writes. */
  probe(): Promise<Error | null>;
  /** The last write error, cleared by the next successful write. */
  readonly lastWriteError: Error | null;
  readonly isClosed: boolean;
  /** Waits for queued units, then closes. Idempotent. */
  close(): Promise<void>;
}

/**
 * Attachment files, content-addressed by SHA-256. Every instance must be able to
 * serve every file: on disk in DATA_DIR for the embedded store, in the database
 * for a shared one. A file is durable before `save` resolves, so a ticket never
 * names a file a crash lost.
 */
export interface AttachmentFiles {
  save(att: InboundAttachment): Promise<Attachment>;
  /** The file's bytes, or null when there is none with that hash. */
  read(sha256: string): Promise<Buffer | null>;
}
