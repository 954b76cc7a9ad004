import type { Clock } from '../../clock.js';
import type { Channel } from '../../ticket.js';
import type { StoredPart } from '../types.js';
import { GatewayError } from '../../errors.js';
import type {
  AcceptOutcome,
  AcceptUnit,
  DueDeadline,
  FiredDeadline,
  OutboundInsert,
  OutboundKind,
  OutboundRecord,
  OutboundResult,
  OutboxMessage,
  OutboxSummary,
  RecentTicket,
  ReplyOutcome,
  Store,
  TicketChange,
  TicketRecord,
  UnitWrites,
  OpsSummary,
  CommitTiming,
  CheckpointTiming,
} from '../types.js';
import { Journal } from './journal.js';
import { toOutboundRecord, toTicketRecord } from '../rows.js';

/** How often an idle store looks for outbox rows journaled by another process. */
const FOREIGN_POLL_MS = 1000;
/**
 * A sent message's mark, and the deletion of outbox rows the broker confirmed, wait
 * at most this long for a batch to join (see Journal.runSoon): under load the next
 * ticket comes within a millisecond or two, and when nothing comes, the
 * "acknowledged" event a mark causes is only this much later.
 */
const SENT_LINGER_MS = 20;

/**
 * The embedded backend: the `Store` units on the SQLite journal in DATA_DIR. One
 * gateway per data directory, so what PostgreSQL coordinates between instances
 * (outbox and outbound claims, leases) is held in memory here; every unit is a
 * group-committed `journal.run`, synchronous inside, which is what keeps a ticket
 * at a fraction of a millisecond of store time.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly journal: Journal;
  /** The relay's position: rows up to here were taken (and are published or in flight). */
  private cursor = 0;
  /** Outbound rows a sender holds, with when the hold lapses. */
  private claims = new Map<string, number>();

  constructor(
    dataDir: string,
    opts: { sync: 'full' | 'normal'; checkpointEveryMs?: number },
    private readonly clock: Clock,
  ) {
    this.journal = new Journal(dataDir, opts);
    this.foreignPoll = setInterval(() => this.noticeForeignOutbox(), FOREIGN_POLL_MS);
    this.foreignPoll.unref();
  }

  /** Looks for outbox rows another process journaled (see noticeForeignOutbox). */
  private foreignPoll: NodeJS.Timeout | null;

  /**
   * Another process on the same file (`intake-gateway replay`) journals outbox rows
   * this process's relay would not hear of: its commit calls no onOutbox here, and
   * the in-memory mirror of the outbox tail lacks them. An idle relay learns of them
   * here within a second; a busy one as soon as its own next row shows the gap.
   */
  private noticeForeignOutbox(): void {
    if (!this.journal.adoptForeignOutbox()) return;
    // An empty unit: its fsync (sync 'full') makes the adopted rows count as durable to the relay, which is then woken.
    this.journal.run(() => undefined).then(
      () => this.journal.onOutbox(),
      () => {},
    );
  }

  get onOutbox(): () => void {
    return this.journal.onOutbox;
  }

  set onOutbox(fn: () => void) {
    this.journal.onOutbox = fn;
  }

  get onCheckpoint(): ((t: CheckpointTiming) => void) | undefined {
    return this.journal.onCheckpoint ?? undefined;
  }

  set onCheckpoint(fn: ((t: CheckpointTiming) => void) | undefined) {
    this.journal.onCheckpoint = fn ?? null;
  }

  set onStoreWarning(fn: (message: string) => void) {
    this.journal.onCheckpointError = (m) => fn(`WAL checkpoint failed: ${m}`);
  }

  get onCommit(): ((t: CommitTiming) => void) | undefined {
    return this.journal.onCommit ?? undefined;
  }

  set onCommit(fn: ((t: CommitTiming) => void) | undefined) {
    this.journal.onCommit = fn ?? null;
  }

  get lastWriteError(): Error | null {
    return this.journal.lastWriteError;
  }

  get isClosed(): boolean {
    return this.journal.isClosed;
  }

  // ---- intake -------------------------------------------------------------

  accept(unit: AcceptUnit): Promise<AcceptOutcome> {
    const j = this.journal;
    return j.run((): AcceptOutcome => {
      const now = this.clock.now();
      const seen = j.getDedupe(unit.channel, unit.dedupeKey);
      const seenId = seen && (unit.dedupeWindowMs === null || now - seen.last_seen < unit.dedupeWindowMs) ? seen.ticket_id : unit.keyedId;
      const seenRow = seenId ? j.getTicketRow(seenId) : undefined;
      if (seen && seenId) j.touchDedupe(unit.channel, unit.dedupeKey, now);
      if (seenRow) {
        if (unit.partsGroup) j.dropParts(unit.channel, unit.partsGroup);
        return { status: 'duplicate', record: toTicketRecord(seenRow), now };
      }

      for (const ref of unit.threadRefs) {
        const tid = j.getRef(ref);
        const row = tid ? j.getTicketRow(tid) : undefined;
        if (!row || row.state !== 'open') continue;
        const record = toTicketRecord(row);
        this.applyWrites(unit.followup(record, now), now);
        j.setDedupe(unit.channel, unit.dedupeKey, record.id, now);
        if (unit.partsGroup) j.dropParts(unit.channel, unit.partsGroup);
        return { status: 'followup', record, now };
      }

      const day = unit.dayOf(now);
      const number = `${day}-${String(j.nextNumber(day)).padStart(6, '0')}`;
      // Lazy: the statement runs only if create() reads it, and is closed when it stops reading.
      const recent = recentTickets(() => j.recentByCitizen(unit.citizenKey, now - unit.repeatWindowMs));
      const nt = unit.create({ now, number, recent });
      j.insertTicket(
        {
          id: nt.id,
          number: nt.number,
          channel: unit.channel,
          citizen_key: nt.citizenKey,
          created_at: nt.createdAt,
          respond_by: nt.respondBy,
          acknowledged_at: nt.acknowledgedAt,
          matter: nt.matter,
          repeat_of: nt.repeatOf,
          body: nt.json,
        },
        unit.raw,
        nt.due,
      );
      if (nt.dedupe) j.setDedupe(unit.channel, unit.dedupeKey, nt.id, now);
      this.applyWrites(nt, now);
      if (unit.partsGroup) j.dropParts(unit.channel, unit.partsGroup);
      return {
        status: 'created',
        now,
        record: {
          id: nt.id,
          number: nt.number,
          channel: unit.channel,
          citizenKey: nt.citizenKey,
          createdAt: nt.createdAt,
          respondBy: nt.respondBy,
          acknowledgedAt: nt.acknowledgedAt,
          respondedAt: null,
          breached: false,
          repeatOf: nt.repeatOf,
          ticket: nt.ticket,
          json: nt.json,
        },
      };
    });
  }

  recordOnce(channel: Channel, key: string, writes: UnitWrites, partsGroup: string | null = null): Promise<boolean> {
    const j = this.journal;
    return j.run(() => {
      const now = this.clock.now();
      if (partsGroup) j.dropParts(channel, partsGroup);
      if (j.getDedupe(channel, key)) return false;
      j.setDedupe(channel, key, '', now);
      this.applyWrites(writes, now);
      return true;
    });
  }

  append(writes: UnitWrites): Promise<void> {
    return this.journal.run(() => this.applyWrites(writes, this.clock.now()));
  }

  private applyWrites(w: UnitWrites, now: number): void {
    const j = this.journal;
    for (const o of w.outbox ?? []) j.addOutbox(o, now);
    for (const o of w.outbound ?? []) j.addOutbound(toOutboundRow(o));
    for (const r of w.refs ?? []) j.addRef(r.ref, r.ticketId);
  }

  private applyChange(t: TicketRecord, c: TicketChange, now: number): TicketRecord {
    const j = this.journal;
    const next = { ...t };
    if (c.acknowledgedAt !== undefined && j.setAcknowledged(t.id, c.acknowledgedAt)) next.acknowledgedAt = c.acknowledgedAt;
    if (c.respondedAt !== undefined && j.setResponded(t.id, c.respondedAt)) next.respondedAt = c.respondedAt;
    if (c.breached) {
      j.setBreached(t.id);
      next.breached = true;
    }
    if (c.clearDue) j.cancelDeadlines(t.id);
    this.applyWrites(c, now);
    return next;
  }

  // ---- tickets --------------------------------------------------------------

  async getTicket(id: string): Promise<TicketRecord | null> {
    const row = this.journal.getTicketRow(id);
    return row ? toTicketRecord(row) : null;
  }

  async getTicketByNumber(number: string): Promise<TicketRecord | null> {
    const row = this.journal.getTicketRowByNumber(number);
    return row ? toTicketRecord(row) : null;
  }

  async listTickets(q: { since: number; channel?: Channel; limit: number }): Promise<TicketRecord[]> {
    return this.journal.ticketsSince(q.since, q.channel ?? null, q.limit).map(toTicketRecord);
  }

  updateTicket(id: string, change: (t: TicketRecord, now: number) => TicketChange | null): Promise<{ record: TicketRecord; changed: boolean } | null> {
    return this.journal.run(() => {
      const now = this.clock.now();
      const row = this.journal.getTicketRow(id);
      if (!row) return null;
      const record = toTicketRecord(row);
      const c = change(record, now);
      if (!c) return { record, changed: false };
      return { record: this.applyChange(record, c, now), changed: true };
    });
  }

  // ---- outgoing -------------------------------------------------------------

  addReply(row: OutboundInsert, maxPerTicket: number): Promise<ReplyOutcome> {
    const j = this.journal;
    return j.run((): ReplyOutcome => {
      if (!row.ticketId || !j.getTicketRow(row.ticketId)) throw new GatewayError('NOT_FOUND', `no ticket ${row.ticketId}`);
      if (j.getOutbound(row.id)) return 'duplicate';
      if (j.countReplies(row.ticketId) >= maxPerTicket) return 'full';
      j.addOutbound(toOutboundRow(row));
      return 'created';
    });
  }

  async claimOutbound(now: number, limit: number, _owner: string, leaseMs: number): Promise<OutboundRecord[]> {
    const held = [...this.claims.values()].filter((until) => until > now).length;
    const out: OutboundRecord[] = [];
    for (const row of this.journal.dueOutbound(now, limit + held)) {
      if (out.length >= limit) break;
      const until = this.claims.get(row.id);
      if (until !== undefined && until > now) continue;
      this.claims.set(row.id, now + leaseMs);
      out.push(toOutboundRecord(row));
    }
    return out;
  }

  async renewOutbound(_owner: string, ids: string[], leaseMs: number): Promise<void> {
    const until = this.clock.now() + leaseMs;
    for (const id of ids) if (this.claims.has(id)) this.claims.set(id, until);
  }

  outboundSent(id: string, result: OutboundResult, change: ((t: TicketRecord, now: number) => TicketChange | null) | null): Promise<void> {
    const j = this.journal;
    // The row stays claimed in memory until this resolves, so waiting for the next batch
    // cannot send it twice; a crash meanwhile resends it, as a crash before the fsync did.
    return j
      .runSoon(() => {
        const now = this.clock.now();
        j.outboundSent(id, now, result.via, result.upstreamId);
        const ticketId = j.getOutbound(id)?.ticket_id;
        const row = ticketId && change ? j.getTicketRow(ticketId) : undefined;
        if (!row) return;
        const record = toTicketRecord(row);
        const c = change!(record, now);
        if (c) this.applyChange(record, c, now);
      }, SENT_LINGER_MS)
      .finally(() => this.claims.delete(id));
  }

  outboundRetry(id: string, nextAt: number, error: string): Promise<void> {
    return this.journal.run(() => this.journal.outboundRetry(id, nextAt, error)).finally(() => this.claims.delete(id));
  }

  outboundFailed(id: string, error: string, writes: UnitWrites): Promise<void> {
    return this.journal
      .run(() => {
        this.journal.outboundFailed(id, error);
        this.applyWrites(writes, this.clock.now());
      })
      .finally(() => this.claims.delete(id));
  }

  outboundDelivery(channel: Channel, upstreamId: string, status: string): Promise<boolean> {
    return this.journal.run(() => this.journal.outboundDelivery(channel, upstreamId, status));
  }

  async outboundOfTicket(ticketId: string, limit: number, kind?: OutboundKind): Promise<OutboundRecord[]> {
    const rows = kind === 'reply' ? this.journal.lastReplies(ticketId, limit) : this.journal.outboundByTicket(ticketId, limit);
    return (kind && kind !== 'reply' ? rows.filter((r) => r.kind === kind) : rows).map(toOutboundRecord);
  }

  async nextOutboundAfter(after: number): Promise<number | null> {
    return this.journal.nextOutboundAfter(after);
  }

  // ---- deadlines ----------------------------------------------------------

  fireDue(now: number, limit: number, decide: (due: DueDeadline, t: TicketRecord) => FiredDeadline | null): Promise<{ due: DueDeadline; fired: FiredDeadline }[]> {
    const j = this.journal;
    return j.run(() => {
      const out: { due: DueDeadline; fired: FiredDeadline }[] = [];
      // Read inside the unit: units run one after another, so no event is read twice.
      for (const d of j.dueDeadlines(now, limit)) {
        const due: DueDeadline = { ticketId: d.ticket_id, kind: d.kind, dueAt: d.due_at, respondBy: d.respond_by };
        const row = j.getTicketRow(d.ticket_id);
        if (!row) continue;
        const record = toTicketRecord(row);
        const fired = decide(due, record);
        if (!fired) continue;
        if (!j.advanceDue(d.ticket_id, { kind: d.kind, at: d.due_at }, fired.next)) continue;
        this.applyChange(record, fired, now);
        out.push({ due, fired });
      }
      return out;
    });
  }

  async nextDeadline(): Promise<number | null> {
    return this.journal.nextDeadline();
  }

  async openDeadlines(): Promise<number> {
    return this.journal.openDeadlines();
  }

  async opsSummary(now: number, dayStart: number): Promise<OpsSummary> {
    return this.journal.opsSummary(now, dayStart);
  }

  // ---- outbox relay -------------------------------------------------------

  async takeOutbox(limit: number): Promise<OutboxMessage[]> {
    const rows = this.journal.readOutbox(this.cursor, limit);
    if (rows.length > 0) this.cursor = Math.max(this.cursor, rows.at(-1)!.seq);
    return rows;
  }

  confirmOutbox(seqs: number[]): Promise<void> {
    // No transaction of its own (it joins the next batch) and no fsync of its own
    // (durable: false). run() gave it a commit whenever nothing else was queued in the
    // same turn, which with one message at a time was every confirm; a crash before the
    // delete publishes the rows again, deduped by messageId.
    return this.journal.runSoon(() => this.journal.deleteOutbox(seqs), SENT_LINGER_MS, { durable: false });
  }

  async releaseOutbox(seqs?: number[]): Promise<void> {
    // One relay per file: the cursor goes back to just before the earliest row handed back.
    this.cursor = seqs ? Math.min(this.cursor, Math.min(...seqs) - 1) : 0;
    this.journal.resetRelay();
  }

  readyCount(): number {
    return this.journal.readyCount();
  }

  async hasUntaken(): Promise<boolean> {
    return this.journal.hasOutboxAfter(this.cursor);
  }

  outboxDepth(): number {
    return this.journal.outboxDepth();
  }

  async outboxSummary(): Promise<OutboxSummary> {
    // One relay per data directory, holding what it took in memory: no leases to report.
    return { ...this.journal.outboxSummary(), taken: 0, lapsed: 0 };
  }

  // ---- channel state ------------------------------------------------------

  async kvGet(channel: Channel | '_store', key: string): Promise<string | null> {
    return this.journal.kvGet(channel, key);
  }

  kvSet(channel: Channel | '_store', key: string, value: string): Promise<void> {
    return this.journal.run(() => this.journal.kvSet(channel, key, value));
  }

  putPart(channel: Channel, group: string, index: number, data: Buffer, meta: string): Promise<StoredPart[]> {
    const j = this.journal;
    return j.run(() => {
      j.putPart(channel, group, index, data, meta, this.clock.now());
      return j.getParts(channel, group);
    });
  }

  async getParts(channel: Channel, group: string): Promise<StoredPart[]> {
    return this.journal.getParts(channel, group);
  }

  dropParts(channel: Channel, group: string): Promise<void> {
    return this.journal.run(() => this.journal.dropParts(channel, group));
  }

  async staleGroups(channel: Channel, before: number, limit: number): Promise<string[]> {
    return this.journal.staleGroups(channel, before, limit);
  }

  // ---- leases ---------------------------------------------------------------

  acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean> {
    return this.journal.run(() => {
      const now = this.clock.now();
      return this.journal.takeLease(name, owner, now + ttlMs, now);
    });
  }

  releaseLease(name: string, owner: string): Promise<void> {
    return this.journal.run(() => this.journal.dropLease(name, owner));
  }

  // ---- operations -----------------------------------------------------------

  whenDurable(): Promise<void> {
    return this.journal.whenDurable();
  }

  async probe(): Promise<Error | null> {
    return this.journal.probeWrite(this.clock.now());
  }

  close(): Promise<void> {
    if (this.foreignPoll) clearInterval(this.foreignPoll);
    this.foreignPoll = null;
    return this.journal.close();
  }
}


function* recentTickets(read: () => IterableIterator<{ id: string; matter: string; repeat_of: string | null }>): Generator<RecentTicket> {
  for (const r of read()) yield { id: r.id, matter: r.matter, repeatOf: r.repeat_of };
}

function toOutboundRow(o: OutboundInsert) {
  return {
    id: o.id,
    ticket_id: o.ticketId,
    channel: o.channel,
    kind: o.kind,
    text: o.text,
    target: JSON.stringify(o.target),
    next_at: o.nextAt,
    created_at: o.createdAt,
  };
}

