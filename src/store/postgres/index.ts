import pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { Channel } from '../../ticket.js';
import type { CommitTiming, StoredPart } from '../types.js';
import { GatewayError, errorMessage } from '../../errors.js';
import type {
  AcceptOutcome,
  AcceptUnit,
  DueDeadline,
  FiredDeadline,
  NewTicket,
  OutboundInsert,
  OutboundKind,
  OutboundRecord,
  OutboundResult,
  OutboxMessage,
  OutboxSummary,
  ReplyOutcome,
  Store,
  TicketChange,
  TicketRecord,
  UnitWrites,
  OpsSummary,
} from '../types.js';
import { CallbackFailure, callback, corked, pgCode, query, storeError, types, type Db } from './db.js';
import { migrate } from './migrate.js';
import * as T from './tickets.js';
import * as O from './outbox.js';
import * as B from './outbound.js';
import * as D from './deadlines.js';
import * as S from './state.js';
import { PgAttachmentStore } from './attachments.js';
import { unitWrite, type UnitEnd } from './writes.js';
import { outboxBody, writtenOutboxMessage } from '../rows.js';

export { PgAttachmentStore } from './attachments.js';

export interface PostgresStoreOptions {
  /** postgres://… naming the database every instance of the gateway shares. */
  url: string;
  clock: Clock;
  /** Unique per running instance: it owns the outbox rows its relay took. */
  instanceId: string;
  /** How long outbox rows taken by this instance stay its own without renewal (default 10 s, within the 15 s the contract allows a dead instance's rows). */
  leaseMs?: number;
  /** Connections in the pool (default 10); one more is kept for LISTEN, and one for reserving ticket numbers. */
  poolSize?: number;
  /** Ticket numbers reserved at a time (default 100); see nextNumber. */
  numberBlock?: number;
  logger?: Pick<Logger, 'warn' | 'error'>;
}

/** Per-unit facts the runner acts on after the commit. */
interface UnitState {
  outbox: number;
  /** The unit's outbox rows when they were written taken by this instance (see handed); null when written untaken. */
  handed: OutboxMessage[] | null;
  /** When the unit's last write left together with its COMMIT (see finish); null while the transaction is open. */
  committedAt: number | null;
}

const UNKNOWN = Number.MAX_SAFE_INTEGER;
const POLL_MS = 1000;
/**
 * A commit that adds outbox rows wakes the other instances' relays (NOTIFY) only
 * when this instance's own relay has not taken rows for this long: while it takes,
 * it publishes what this instance commits, and a NOTIFY costs every commit a
 * database-wide lock (PostgreSQL queues notifications in commit order) plus a
 * wake-up of every listener. When this relay stops (its broker link down, its
 * window full), the others hear of new rows again within this time, and the
 * 1 s poll finds whatever was committed in between.
 */
const RELAY_QUIET_MS = 250;
/** How often a take also looks for rows whose holder's lease lapsed. */
const LAPSED_LOOK_MS = 1000;
/**
 * Rows written taken by this instance wait at most this many for its relay, twice its
 * default window (beyond, they are written untaken, and a take reads them from the
 * table in seq order).
 */
const HANDED_MAX = 2_000;
/** Rows a take from memory returns at most (see takeOutbox). */
const HANDED_TAKE = 100;
/**
 * When the relay has taken nothing for this long while rows wait for it (its broker
 * link is down), those rows go back to the table at the next poll, so another
 * instance's relay can take them. A relay that takes slowly (its window full) keeps
 * them: handing back and taking again would add two updates per row just when the
 * machine is busiest.
 */
const HANDED_WAIT_MS = 1000;
/**
 * Confirmed rows are deleted together, at most this long after their confirm (or
 * once CONFIRM_BATCH are waiting): at 400 tickets/s each confirm otherwise cost a
 * statement of its own. A row confirmed and not yet deleted when the instance dies
 * is published again, which consumers dedupe by messageId.
 */
const CONFIRM_LINGER_MS = 20;
const CONFIRM_BATCH = 1000;
const CONNECT_TIMEOUT_MS = 5000;

/**
 * A connection that gives up opening after CONNECT_TIMEOUT_MS, and whose TCP
 * keepalive notices a peer that vanished without closing (the LISTEN connection
 * would otherwise wait for notifications on a dead socket).
 */
class BoundedClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super({ ...(typeof config === 'string' ? { connectionString: config } : config), connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true });
  }
}
/** Opens a unit's transaction on its connection. */
type Begin = (c: pg.PoolClient) => Promise<unknown>;
const BEGIN: Begin = (c) => c.query('BEGIN');

const quiet: Pick<Logger, 'warn' | 'error'> = { warn: () => {}, error: () => {} } as unknown as Pick<Logger, 'warn' | 'error'>;

/** A concurrent insert of the same keyed ticket id, or a deadlock: running the unit again decides it afresh. */
function retryable(err: unknown): boolean {
  const { code, constraint } = pgCode(err);
  return (code === '23505' && constraint === 'tickets_pkey') || code === '40P01' || code === '40001';
}

/**
 * The store shared by several gateway instances. Each write method is one unit
 * run in a transaction of its own on a pooled connection; decisions that depend
 * on what is stored are made under row locks or advisory locks so they hold
 * cluster-wide. A commit is durable when it returns, so nothing waits for a sync.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  /** Called after a commit that added outbox rows, here or (through LISTEN) on another instance. */
  onOutbox: () => void = () => {};
  onCommit?: (t: CommitTiming) => void;
  lastWriteError: Error | null = null;
  /** Server settings found at open that will hurt (for the log and `doctor`). */
  readonly serverWarnings: string[] = [];

  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly running = new Set<Promise<unknown>>();
  /** Outbox rows this instance took and has neither confirmed nor released. */
  private readonly held = new Set<number>();
  /**
   * Outbox rows this instance's units wrote already taken by it, oldest first, for
   * its relay to publish without reading them back: while the relay keeps up, a
   * take is no round trip. Their lease is renewed with the held rows'. `at` is
   * performance.now() at the commit (HANDED_WAIT_MS).
   */
  private handed: { msg: OutboxMessage; at: number }[] = [];
  /** Confirmed seqs waiting to be deleted together (CONFIRM_LINGER_MS), and who waits for that. */
  private confirmed: number[] = [];
  private confirmWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private confirmTimer: NodeJS.Timeout | null = null;
  /** Rows a take from the table could return, as last known; UNKNOWN until a take comes back short. */
  private ready = UNKNOWN;
  private depth = 0;
  private listener: pg.Client | null = null;
  private listenRetry: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private polling = false;
  /** Owners that claimed outbound rows through this store, released at close. */
  private readonly claimOwners = new Set<string>();
  /** The day's numbers this instance reserved and has not handed out yet: next … last, and those units gave back. */
  private numbers: { day: string; next: number; last: number; back: number[] } | null = null;
  private reserving: Promise<void> | null = null;
  private readonly numberBlock: number;
  /** When this instance's relay last took outbox rows (monotonic ms), see RELAY_QUIET_MS. */
  private lastTake = -Infinity;
  private lastLapsedLook = -Infinity;
  private readonly clock: Clock;
  private readonly instanceId: string;
  private readonly leaseMs: number;
  /** HANDED_WAIT_MS, or a third of a shorter lease. */
  private readonly handedWaitMs: number;
  private readonly logger: Pick<Logger, 'warn' | 'error'>;

  private constructor(
    /** The connection pool (exposed like the SQLite store's `db`, for operations). */
    readonly pool: pg.Pool,
    /**
     * One connection for reserving ticket numbers. A unit waits for its number while
     * holding a pooled connection; were the reservation to need one from the same
     * pool, units holding all of them would wait for each other for ever.
     */
    private readonly counterPool: pg.Pool,
    private readonly opts: PostgresStoreOptions,
  ) {
    this.clock = opts.clock;
    this.numberBlock = Math.max(1, Math.floor(opts.numberBlock ?? 100));
    this.instanceId = opts.instanceId;
    this.leaseMs = opts.leaseMs ?? 10_000;
    this.handedWaitMs = Math.min(HANDED_WAIT_MS, this.leaseMs / 3);
    this.logger = opts.logger ?? quiet;
  }

  /** Connects, brings the schema up to date (safe when several instances start at once), and starts listening for other instances' outbox commits. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      types,
      application_name: `gateway ${opts.instanceId}`,
      // A unit sends its statements without waiting for each answer where the next does
      // not depend on it (BEGIN and the first read; the last write and COMMIT): see begun, finish.
      pipeline: true,
      // Units wait for a free connection as long as it takes (under load that wait is the back-pressure),
      // but opening one gives up after CONNECT_TIMEOUT_MS: while PostgreSQL is unreachable, units fail
      // as STORE_UNAVAILABLE instead of hanging. The pool's own timeout would bound both waits at once.
      Client: BoundedClient,
    });
    // An idle connection that drops is replaced on next use; without a handler the error would end the process.
    pool.on('error', (err) => (opts.logger ?? quiet).warn({ err: errorMessage(err) }, 'idle database connection lost'));
    try {
      await migrate(pool);
    } catch (err) {
      await pool.end().catch(() => {});
      throw storeError(err);
    }
    const counterPool = new pg.Pool({ connectionString: opts.url, max: 1, types, application_name: `gateway ${opts.instanceId} numbers`, Client: BoundedClient });
    counterPool.on('error', (err) => (opts.logger ?? quiet).warn({ err: errorMessage(err) }, 'idle database connection lost'));
    const store = new PostgresStore(pool, counterPool, opts);
    if (await O.autovacuumOff(pool).catch(() => false)) {
      store.serverWarnings.push(O.AUTOVACUUM_OFF);
      store.logger.warn(O.AUTOVACUUM_OFF);
    }
    await store.poll();
    store.pollTimer = setInterval(() => void store.poll(), POLL_MS);
    store.pollTimer.unref();
    await store.listen();
    return store;
  }

  /** Attachments kept in this database, so every instance serves them. */
  attachmentStore(maxBytes: number): PgAttachmentStore {
    return new PgAttachmentStore(this.pool, this.clock, maxBytes);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- running units ------------------------------------------------------

  /**
   * Runs one unit: in a transaction of its own (`tx`), or as the single statement
   * it is. Errors of the caller's callbacks come out unchanged; the store's own
   * refusals (NOT_FOUND, INPUT_INVALID for a value the database cannot hold) as
   * they are; anything else is STORE_UNAVAILABLE and is remembered as the last
   * write error until a unit succeeds.
   */
  private unit<R>(work: (db: Db, u: UnitState) => Promise<R>, tx: boolean | Begin = true): Promise<R> {
    if (this.closed) return Promise.reject(new GatewayError('STORE_CLOSED', 'store is closed'));
    const p = this.runUnit(work, tx);
    this.running.add(p);
    const done = () => this.running.delete(p);
    p.then(done, done);
    return p;
  }

  private async runUnit<R>(work: (db: Db, u: UnitState) => Promise<R>, tx: boolean | Begin): Promise<R> {
    for (let attempt = 0; ; attempt++) {
      const u: UnitState = { outbox: 0, handed: null, committedAt: null };
      try {
        const value = tx ? await this.transaction((c) => work(c, u), tx === true ? BEGIN : tx, u) : await work(this.pool, u);
        this.lastWriteError = null;
        if (u.outbox > 0) this.committedOutbox(u.outbox, u.handed);
        return value;
      } catch (err) {
        if (err instanceof CallbackFailure) throw err.error;
        if (attempt === 0 && retryable(err)) continue;
        const e = storeError(err);
        // A refusal (NOT_FOUND, a value the database cannot hold) says nothing about whether it takes writes.
        if (e.code === 'STORE_UNAVAILABLE') this.lastWriteError = e;
        throw e;
      }
    }
  }

  private async transaction<R>(fn: (c: pg.PoolClient) => Promise<R>, begin: Begin, u: UnitState): Promise<R> {
    const queuedAt = performance.now();
    const c = await this.pool.connect();
    const startedAt = performance.now();
    let broken: Error | undefined;
    // A connection that drops mid-unit emits 'error' besides failing the query; unheard, it would end the process.
    const onError = (err: Error) => {
      broken = err;
    };
    c.on('error', onError);
    try {
      const value = await this.begun(c, begin, fn);
      let committing = u.committedAt;
      if (committing === null) {
        committing = performance.now();
        await c.query('COMMIT');
      }
      // Each unit is its own transaction: queued = waiting for a pooled connection,
      // commit = BEGIN to COMMIT sent, durable = COMMIT's round trip (the WAL flush;
      // with the unit's last write when it went along, see finish).
      this.onCommit?.({ units: 1, queuedMs: startedAt - queuedAt, commitMs: committing - startedAt, durableMs: performance.now() - committing });
      return value;
    } catch (err) {
      await c.query('ROLLBACK').catch((e: Error) => {
        broken = e;
      });
      throw err;
    } finally {
      c.removeListener('error', onError);
      // A broken connection is closed instead of going back to the pool.
      c.release(broken);
    }
  }

  /**
   * Runs `fn` in the transaction `begin` opens. The pool's connections run in
   * pipeline mode, so BEGIN (with the key's lock, for accept) and the unit's first
   * statement leave in one write and come back in one round trip instead of two;
   * the server still runs them in order, so that statement runs after the lock is
   * granted. Nothing runs outside the transaction when BEGIN fails: the statements
   * behind a failed BEGIN fail too ("current transaction is aborted"), and BEGIN's
   * own error is the one reported (a key PostgreSQL cannot hold is INPUT_INVALID).
   */
  private async begun<R>(c: pg.PoolClient, begin: Begin, fn: (c: pg.PoolClient) => Promise<R>): Promise<R> {
    let running!: Promise<R>;
    const opened = corked(c, () => {
      const b = begin(c).then(
        () => null,
        (err: unknown) => ({ err }),
      );
      try {
        running = fn(c);
      } catch (err) {
        running = Promise.reject(err);
      }
      return b;
    });
    const [beginFailed, ran] = await Promise.all([
      opened,
      running.then(
        (value) => ({ ok: true as const, value }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    ]);
    if (beginFailed) throw beginFailed.err;
    if (!ran.ok) throw ran.err;
    return ran.value;
  }

  /**
   * A unit's last statement: its writes (one statement, see writes.ts), sent in one
   * write together with the COMMIT, so the unit's end is one round trip. If the
   * writes fail, the server skips nothing it should run: the COMMIT of the failed
   * transaction answers ROLLBACK, and the writes' error is the unit's. Only units
   * run in a transaction write (`unit(work)` with `tx` true).
   */
  private async finish(db: Db, u: UnitState, unitEnd: Omit<UnitEnd, 'writer' | 'takenBy' | 'outboxBodies'>): Promise<void> {
    if (db instanceof pg.Pool) throw new Error("a unit's writes run in its transaction");
    const outbox = unitEnd.writes.outbox ?? [];
    const takenBy = outbox.length > 0 ? this.takeHere() : null;
    // Serialized once, for the statement and for the rows handed to the relay.
    const outboxBodies = outbox.map(outboxBody);
    // Rows this instance's relay takes from memory wake nobody else.
    const end: UnitEnd = { ...unitEnd, takenBy, writer: takenBy ? null : this.notifyAs(), outboxBodies };
    const w = unitWrite(end);
    if (!w) return;
    u.committedAt = performance.now();
    const [written, committed] = await Promise.allSettled(
      corked(db, () => [query<{ seqs: string[] | null; ids: string[] | null }>(db, w.text, w.values), db.query('COMMIT')]),
    );
    if (written.status === 'rejected') throw written.reason;
    if (committed.status === 'rejected') throw committed.reason;
    if (committed.value.command !== 'COMMIT') throw new Error(`the unit's transaction ended with ${committed.value.command}`);
    u.outbox += outbox.length;
    if (takenBy && outbox.length > 0) {
      const r = written.value.rows[0];
      const seqOf = new Map((r?.ids ?? []).map((id, i) => [id, Number(r!.seqs![i])]));
      // Not expected (each row's messageId is its own): rows that cannot be matched lapse to a take's look for lapsed leases.
      if (!outbox.every((m) => seqOf.has(m.messageId))) {
        this.logger.warn({ rows: outbox.length, returned: seqOf.size }, 'outbox rows written for this relay could not be matched to their seqs; they lapse with their lease');
        return;
      }
      u.handed = outbox.map((m, i) => writtenOutboxMessage(seqOf.get(m.messageId)!, m, outboxBodies[i]!, end.now));
      u.handed.sort((a, b) => a.seq - b.seq);
    }
  }

  /**
   * Whether a unit's outbox rows are written taken by this instance, for its relay to
   * publish from memory: while that relay is taking rows (RELAY_QUIET_MS), nothing
   * untaken is known to wait in the table (so seq order holds: untaken rows go
   * first, through the table), and the rows in memory are few enough.
   */
  private takeHere(): { owner: string; leaseMs: number } | null {
    if (this.closed || this.ready !== 0 || this.handed.length >= HANDED_MAX || this.notifyAs() !== null) return null;
    return { owner: this.instanceId, leaseMs: this.leaseMs };
  }

  private async read<R>(fn: (db: Db) => Promise<R>): Promise<R> {
    if (this.closed) throw new GatewayError('STORE_CLOSED', 'store is closed');
    try {
      return await fn(this.pool);
    } catch (err) {
      throw storeError(err);
    }
  }

  private applyWrites(db: Db, u: UnitState, writes: UnitWrites, now: number): Promise<void> {
    return this.finish(db, u, { writes, now });
  }

  /** The NOTIFY payload's writer for a unit's outbox rows, or null while this instance's relay takes them itself (RELAY_QUIET_MS). */
  private notifyAs(): string | null {
    return performance.now() - this.lastTake > RELAY_QUIET_MS ? this.instanceId : null;
  }

  /**
   * The next number of `day` for a new ticket. Numbers come from a block this
   * instance reserved in `ticket_counters` with a statement of its own (see
   * reserveNumbers), so no unit holds the counter row: accepts on every instance
   * run side by side. Numbers stay unique cluster-wide and across restarts and
   * always carry the day they belong to (a new day takes a new block), but are no
   * longer contiguous (the rest of a block is lost when the instance stops, a
   * rolled-back unit loses its number) nor in acceptance order across instances.
   */
  private async nextNumber(day: string): Promise<number> {
    for (;;) {
      const b = this.numbers;
      if (b && b.day === day) {
        if (b.back.length > 0) return b.back.pop()!;
        if (b.next <= b.last) return b.next++;
      }
      // One reservation at a time; units that ran out meanwhile share it.
      this.reserving ??= this.reserveBlock(day).finally(() => {
        this.reserving = null;
      });
      await this.reserving;
    }
  }

  private async reserveBlock(day: string): Promise<void> {
    const last = await T.reserveNumbers(this.counterPool, day, this.numberBlock);
    this.numbers = { day, next: last - this.numberBlock + 1, last, back: [] };
  }

  /**
   * A number whose unit certainly did not commit (its ticket never reached the
   * database, or the database refused the unit) goes back to be handed out next.
   * A lost connection leaves the commit in doubt: that number stays unused.
   */
  private giveBack(day: string, n: number, err: unknown): void {
    const b = this.numbers;
    if (!b || b.day !== day) return;
    if (!(err instanceof CallbackFailure) && pgCode(err).code === undefined) return;
    b.back.push(n);
    b.back.sort((x, y) => y - x);
  }

  private committedOutbox(n: number, handed: OutboxMessage[] | null): void {
    if (handed) {
      const at = performance.now();
      for (const msg of handed) this.handed.push({ msg, at });
      this.startRenewing();
    } else this.ready = Math.min(UNKNOWN, this.ready + n);
    this.depth += n;
    this.wakeRelay();
  }

  private wakeRelay(): void {
    try {
      this.onOutbox();
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'outbox listener failed');
    }
  }

  // ---- intake -----------------------------------------------------------------

  accept(unit: AcceptUnit): Promise<AcceptOutcome> {
    const { channel, dedupeKey } = unit;
    // The same upstream message delivered to two instances: the second waits at the lock, taken with BEGIN, and then sees the first.
    const begin: Begin = (c) => Promise.all([c.query('BEGIN'), T.lockKey(c, channel, dedupeKey)]);
    return this.unit(async (c, u): Promise<AcceptOutcome> => {
      const now = this.clock.now();
      const r = await T.acceptReads(c, {
        channel,
        key: dedupeKey,
        windowMs: unit.dedupeWindowMs,
        now,
        keyedId: unit.keyedId,
        refs: unit.threadRefs,
        citizenKey: unit.citizenKey,
        since: now - unit.repeatWindowMs,
      });
      if (r.earlier) {
        if (unit.partsGroup) await S.dropParts(c, channel, unit.partsGroup);
        return { status: 'duplicate', record: r.earlier, now };
      }

      const open = r.open;
      if (open) {
        const writes = callback(() => unit.followup(open, now));
        await this.finish(c, u, {
          dedupe: { channel, key: dedupeKey, ticketId: open.id },
          parts: unit.partsGroup ? { channel, group: unit.partsGroup } : undefined,
          writes,
          now,
        });
        return { status: 'followup', record: open, now };
      }

      const day = callback(() => unit.dayOf(now));
      const n = await this.nextNumber(day);
      const number = `${day}-${String(n).padStart(6, '0')}`;
      let nt: NewTicket;
      try {
        nt = callback(() => unit.create({ now, number, recent: r.recent }));
        await this.finish(c, u, {
          ticket: { t: nt, channel, raw: unit.raw },
          dedupe: nt.dedupe ? { channel, key: dedupeKey, ticketId: nt.id } : undefined,
          parts: unit.partsGroup ? { channel, group: unit.partsGroup } : undefined,
          writes: nt,
          now,
        });
      } catch (err) {
        this.giveBack(day, n, err);
        throw err;
      }
      const record = T.newRecord(channel, nt);
      return { status: 'created', record, now };
    }, begin);
  }

  recordOnce(channel: Channel, key: string, writes: UnitWrites, partsGroup?: string | null): Promise<boolean> {
    return this.unit(async (c, u) => {
      const now = this.clock.now();
      if (partsGroup) await S.dropParts(c, channel, partsGroup);
      const fresh = await T.recordKey(c, channel, key, now);
      if (fresh) await this.applyWrites(c, u, writes, now);
      return fresh;
    });
  }

  append(writes: UnitWrites): Promise<void> {
    return this.unit((c, u) => this.applyWrites(c, u, writes, this.clock.now()));
  }

  // ---- tickets ----------------------------------------------------------------

  getTicket(id: string): Promise<TicketRecord | null> {
    return this.read((db) => T.getTicket(db, id));
  }

  getTicketByNumber(number: string): Promise<TicketRecord | null> {
    return this.read((db) => T.getTicketByNumber(db, number));
  }

  listTickets(q: { since: number; channel?: Channel; limit: number }): Promise<TicketRecord[]> {
    return this.read((db) => T.listTickets(db, q.since, q.channel ?? null, q.limit));
  }

  updateTicket(id: string, change: (t: TicketRecord, now: number) => TicketChange | null): Promise<{ record: TicketRecord; changed: boolean } | null> {
    return this.unit(async (c, u) => {
      const now = this.clock.now();
      const record = await T.lockTicket(c, id);
      if (!record) return null;
      const ch = callback(() => change(record, now));
      if (!ch) return { record, changed: false };
      const updated = await T.applyChange(c, id, ch);
      await this.applyWrites(c, u, ch, now);
      return { record: updated ?? record, changed: true };
    });
  }

  // ---- outgoing messages --------------------------------------------------------

  addReply(row: OutboundInsert, maxPerTicket: number): Promise<ReplyOutcome> {
    return this.unit(async (c): Promise<ReplyOutcome> => {
      // The ticket row lock makes the count and the insert one step: concurrent replies cannot overfill it.
      const ticket = row.ticketId ? await T.lockTicket(c, row.ticketId) : null;
      if (!ticket) throw new GatewayError('NOT_FOUND', `no ticket ${row.ticketId}`);
      const facts = await B.replyFacts(c, row.id, ticket.id);
      if (facts.exists) return 'duplicate';
      if (facts.replies >= maxPerTicket) return 'full';
      await B.insertOutbound(c, [row]);
      return 'created';
    });
  }

  claimOutbound(now: number, limit: number, owner: string, leaseMs: number): Promise<OutboundRecord[]> {
    this.claimOwners.add(owner);
    return this.unit((db) => B.claimOutbound(db, now, limit, owner, leaseMs), false);
  }
  renewOutbound(owner: string, ids: string[], leaseMs: number): Promise<void> {
    return this.unit((db) => B.renewOutbound(db, owner, ids, leaseMs), false);
  }


  outboundSent(id: string, result: OutboundResult, change: ((t: TicketRecord, now: number) => TicketChange | null) | null): Promise<void> {
    return this.unit(async (c, u) => {
      const now = this.clock.now();
      const sent = await B.markSent(c, id, now, result);
      if (!sent?.ticketId || !change) return;
      const ticket = await T.lockTicket(c, sent.ticketId);
      if (!ticket) return;
      const ch = callback(() => change(ticket, now));
      if (!ch) return;
      await T.applyChange(c, ticket.id, ch);
      await this.applyWrites(c, u, ch, now);
    });
  }

  outboundRetry(id: string, nextAt: number, error: string): Promise<void> {
    return this.unit((db) => B.markRetry(db, id, nextAt, error), false);
  }

  outboundFailed(id: string, error: string, writes: UnitWrites): Promise<void> {
    return this.unit(async (c, u) => {
      await B.markFailed(c, id, error);
      await this.applyWrites(c, u, writes, this.clock.now());
    });
  }

  outboundDelivery(channel: Channel, upstreamId: string, status: string): Promise<boolean> {
    return this.unit((db) => B.setDelivery(db, channel, upstreamId, status), false);
  }

  outboundOfTicket(ticketId: string, limit: number, kind?: OutboundKind): Promise<OutboundRecord[]> {
    return this.read((db) => B.outboundOfTicket(db, ticketId, limit, kind ?? null));
  }

  nextOutboundAfter(after: number): Promise<number | null> {
    return this.read((db) => B.nextOutboundAfter(db, after));
  }

  // ---- deadlines --------------------------------------------------------------------

  fireDue(now: number, limit: number, decide: (due: DueDeadline, t: TicketRecord) => FiredDeadline | null): Promise<{ due: DueDeadline; fired: FiredDeadline }[]> {
    return this.unit(async (c, u) => {
      // Rows another instance is firing right now are skipped, not waited for: they are its to fire.
      const claimed = await D.claimDue(c, now, limit);
      const out: { due: DueDeadline; fired: FiredDeadline }[] = [];
      for (const { due, record } of claimed) {
        const fired = callback(() => decide(due, record));
        if (fired) out.push({ due, fired });
      }
      await D.applyFired(c, out.map((x) => ({ ticketId: x.due.ticketId, f: x.fired })));
      await this.applyWrites(
        c,
        u,
        {
          outbox: out.flatMap((x) => x.fired.outbox ?? []),
          outbound: out.flatMap((x) => x.fired.outbound ?? []),
          refs: out.flatMap((x) => x.fired.refs ?? []),
        },
        now,
      );
      return out;
    });
  }

  nextDeadline(): Promise<number | null> {
    return this.read((db) => D.nextDeadline(db));
  }

  openDeadlines(): Promise<number> {
    return this.read((db) => D.openDeadlines(db));
  }

  async opsSummary(now: number, dayStart: number): Promise<OpsSummary> {
    const [d, oldest] = await Promise.all([this.read((db) => D.opsDeadlines(db, now, dayStart)), this.read((db) => O.oldestOutbox(db))]);
    return { ...d, outboxOldestAt: oldest };
  }

  // ---- outbox relay -----------------------------------------------------------------

  async takeOutbox(limit: number): Promise<OutboxMessage[]> {
    if (this.handed.length > 0) {
      // Written taken by this instance (see takeHere): no statement. A take from the table
      // gives the event loop a turn while it waits for the answer; this one does so too,
      // and returns at most HANDED_TAKE rows, so a relay catching up after a stall does
      // not publish hundreds of rows while requests wait.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const rows = this.handed.splice(0, Math.min(limit, HANDED_TAKE)).map((h) => h.msg);
      this.lastTake = performance.now();
      for (const r of rows) this.held.add(r.seq);
      this.startRenewing();
      return rows;
    }
    // Lapsed leases are rare (an instance died) and finding them means reading every held
    // row: a take looks for them at most once per LAPSED_LOOK_MS; the poll wakes the
    // relay within a second of a lease lapsing, so they wait no longer than before.
    const lapsed = performance.now() - this.lastLapsedLook >= LAPSED_LOOK_MS;
    if (lapsed) this.lastLapsedLook = performance.now();
    const rows = await this.unit((db) => O.takeOutbox(db, this.instanceId, this.leaseMs, limit, lapsed), false);
    this.lastTake = performance.now();
    for (const r of rows) this.held.add(r.seq);
    this.ready = rows.length < limit ? 0 : Math.max(0, this.ready - rows.length);
    if (this.held.size > 0) this.startRenewing();
    return rows;
  }

  confirmOutbox(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(new GatewayError('STORE_CLOSED', 'store is closed'));
    for (const s of seqs) this.confirmed.push(s);
    const done = new Promise<void>((resolve, reject) => this.confirmWaiters.push({ resolve, reject }));
    if (this.confirmed.length >= CONFIRM_BATCH) void this.deleteConfirmed();
    else if (!this.confirmTimer) {
      this.confirmTimer = setTimeout(() => void this.deleteConfirmed(), CONFIRM_LINGER_MS);
      this.confirmTimer.unref();
    }
    return done;
  }

  /** Deletes the confirmed rows gathered so far in one statement; settles their confirmOutbox calls. */
  private async deleteConfirmed(): Promise<void> {
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    this.confirmTimer = null;
    const seqs = this.confirmed;
    const waiters = this.confirmWaiters;
    this.confirmed = [];
    this.confirmWaiters = [];
    if (seqs.length === 0) return;
    try {
      const n = await this.unit((db) => O.deleteOutbox(db, seqs), false);
      for (const s of seqs) this.held.delete(s);
      this.depth = Math.max(0, this.depth - n);
      for (const w of waiters) w.resolve();
    } catch (err) {
      for (const w of waiters) w.reject(err);
    }
  }

  async releaseOutbox(seqs?: number[]): Promise<void> {
    // Forgotten before the statement: renewals stop for these rows even if it fails, so
    // they lapse and are taken again; and a take that returns meanwhile keeps its rows.
    if (seqs) {
      // Rows the relay took: none of them is still in `handed`.
      for (const s of seqs) this.held.delete(s);
    } else {
      // Every row under this instance's name, the handed ones too, is untaken again.
      this.held.clear();
      this.handed = [];
    }
    this.ready = UNKNOWN;
    await this.unit((db) => O.releaseOutbox(db, this.instanceId, seqs), false);
  }

  readyCount(): number {
    return Math.min(UNKNOWN, this.ready + this.handed.length);
  }

  hasUntaken(): Promise<boolean> {
    if (this.handed.length > 0) return Promise.resolve(true);
    return this.read((db) => O.hasUntaken(db));
  }

  outboxDepth(): number {
    return this.depth;
  }

  outboxSummary(): Promise<OutboxSummary> {
    return this.read((db) => O.outboxSummary(db));
  }

  /**
   * While this instance holds outbox rows, their lease is renewed every third of
   * it; when the instance dies the renewals stop and the rows lapse to the others.
   */
  private startRenewing(): void {
    if (this.renewTimer || this.closed) return;
    this.renewTimer = setInterval(() => {
      if (this.held.size === 0 && this.handed.length === 0) {
        this.stopRenewing();
        return;
      }
      O.renewOutbox(this.pool, this.instanceId, this.leaseMs, [...this.held, ...this.handed.map((h) => h.msg.seq)]).then(
        (n) => {
          // Nothing left under our name (confirmed or taken over after a stall): stop tracking it.
          if (n === 0) {
            this.held.clear();
            this.handed = [];
          }
        },
        (err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'could not renew the outbox lease'),
      );
    }, Math.max(1, Math.floor(this.leaseMs / 3)));
    this.renewTimer.unref();
  }

  private stopRenewing(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
  }

  /**
   * Once a second: the outbox depth for metrics and back-pressure, and whether
   * rows wait that no live relay holds (another instance's lapsed lease, a
   * notification missed while LISTEN was reconnecting) — then the relay is woken.
   */
  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      await this.handBackStale();
      const s = await O.outboxStats(this.pool);
      this.depth = s.depth;
      if (s.untaken > 0) {
        this.ready = Math.max(this.ready === UNKNOWN ? 0 : this.ready, s.untaken);
        this.wakeRelay();
      } else if (this.ready === UNKNOWN) this.ready = 0;
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'outbox poll failed');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Hands the rows written for this instance's relay back to the table when the relay
   * has taken nothing for HANDED_WAIT_MS since the oldest was written: all of them, so
   * later rows do not overtake it, and any relay (this one too, through the table)
   * takes them in seq order.
   */
  private async handBackStale(): Promise<void> {
    const oldest = this.handed[0];
    if (!oldest || performance.now() - Math.max(this.lastTake, oldest.at) < this.handedWaitMs) return;
    const seqs = this.handed.map((h) => h.msg.seq);
    this.handed = [];
    this.ready = UNKNOWN;
    try {
      await O.releaseOutbox(this.pool, this.instanceId, seqs);
    } catch (err) {
      // Their lease lapses instead, and a take's look for lapsed rows finds them.
      this.logger.warn({ err: errorMessage(err) }, 'could not hand back outbox rows its relay did not take; they lapse with their lease');
    }
    this.wakeRelay();
  }

  /** A connection of its own hears other instances' outbox commits; it is re-opened whenever it drops. */
  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new BoundedClient({ connectionString: this.opts.url, types, application_name: `gateway ${this.instanceId} listen` });
    let gone = false;
    const lost = (err?: Error) => {
      if (gone) return;
      gone = true;
      if (this.listener === client) this.listener = null;
      client.end().catch(() => {});
      if (this.closed) return;
      if (err) this.logger.warn({ err: errorMessage(err) }, 'outbox listener lost; reconnecting');
      this.listenRetry = setTimeout(() => {
        this.listenRetry = null;
        void this.listen();
      }, POLL_MS);
      this.listenRetry.unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (n) => {
      if (n.channel !== O.OUTBOX_CHANNEL) return;
      const [writer, count] = (n.payload ?? '').split(' ');
      // This instance's own commits woke the relay already.
      if (writer === this.instanceId) return;
      this.ready = Math.min(UNKNOWN, this.ready + (Number(count) || 1));
      this.wakeRelay();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${O.OUTBOX_CHANNEL}`);
      if (gone || this.closed) {
        await client.end().catch(() => {});
        return;
      }
      this.listener = client;
    } catch (err) {
      lost(err as Error);
    }
  }

  // ---- channel state ----------------------------------------------------------------

  kvGet(channel: Channel | '_store', key: string): Promise<string | null> {
    return this.read((db) => S.kvGet(db, channel, key));
  }

  kvSet(channel: Channel | '_store', key: string, value: string): Promise<void> {
    return this.unit((db) => S.kvSet(db, channel, key, value), false);
  }

  putPart(channel: Channel, group: string, index: number, data: Buffer, meta: string): Promise<StoredPart[]> {
    return this.unit(async (c) => {
      await S.lockGroup(c, channel, group);
      await S.putPart(c, channel, group, index, data, meta, this.clock.now());
      return S.getParts(c, channel, group);
    });
  }

  getParts(channel: Channel, group: string): Promise<StoredPart[]> {
    return this.read((db) => S.getParts(db, channel, group));
  }

  dropParts(channel: Channel, group: string): Promise<void> {
    return this.unit((db) => S.dropParts(db, channel, group), false);
  }

  staleGroups(channel: Channel, before: number, limit: number): Promise<string[]> {
    return this.read((db) => S.staleGroups(db, channel, before, limit));
  }

  // ---- leases -------------------------------------------------------------------------

  acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean> {
    return this.unit((db) => S.acquireLease(db, name, owner, ttlMs), false);
  }

  releaseLease(name: string, owner: string): Promise<void> {
    return this.unit((db) => S.releaseLease(db, name, owner), false);
  }

  // ---- operations ---------------------------------------------------------------------

  /** A commit has returned only once it is durable: nothing is ever waiting. */
  whenDurable(): Promise<void> {
    return Promise.resolve();
  }

  async probe(): Promise<Error | null> {
    if (this.closed) return new GatewayError('STORE_CLOSED', 'store is closed');
    try {
      await this.unit((db) => S.kvSet(db, '_store', 'probe', String(this.clock.now())), false);
      return null;
    } catch (err) {
      return err as Error;
    }
  }

  /** Waits for running units, stops listening and renewing, hands back what this instance took, and closes the pool. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // Confirmed rows still waiting for their delete go now, before units are refused.
    void this.deleteConfirmed();
    this.closed = true;
    await Promise.allSettled([...this.running]);
    this.stopRenewing();
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    if (this.listenRetry) clearTimeout(this.listenRetry);
    this.listenRetry = null;
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => {});
    const b = this.numbers;
    this.numbers = null;
    try {
      // Another instance takes these at once instead of after the lease.
      await O.releaseOutbox(this.pool, this.instanceId);
      await B.releaseClaims(this.pool, [...this.claimOwners]);
      // The unused end of the number block, while still the last reserved, leaves no gap behind a restart.
      // After the statements above: when the database is unreachable they fail first, and close does not wait twice.
      if (b && b.next <= b.last) await T.returnNumbers(this.counterPool, b.day, b.next, b.last);
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'could not hand back claimed rows and unused numbers at close; rows lapse with their lease');
    }
    this.held.clear();
    this.handed = [];
    await Promise.all([this.pool.end().catch(() => {}), this.counterPool.end().catch(() => {})]);
  }
}
