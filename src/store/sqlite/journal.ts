import Database from 'better-sqlite3';
import { closeSync, fdatasync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { GatewayError } from '../../errors.js';
import type { CommitTiming, OpsSummary, OutboxInsert, OutboxMessage, StoredPart } from '../types.js';
import { outboxBody, toOutboxMessage, writtenOutboxMessage, type OutboundRow, type OutboxRow, type TicketRow as SharedTicketRow } from '../rows.js';
import { SCHEMA, migrate } from './schema.js';
import { Checkpointer, type CheckpointReport } from './checkpointer.js';

export type { OutboundRow };

/**
 * The embedded store: one SQLite file in DATA_DIR, WAL mode. It is the journal
 * (every ticket and its raw input), the outbox (messages waiting for a broker
 * confirm), and the home of dedupe keys, ticket numbers, deadlines, outgoing
 * messages and channel state.
 *
 * Writes are group-committed: `run(fn)` queues a unit of work, and all units
 * queued in the same turn of the event loop run in one transaction, so one fsync
 * covers many tickets, and a failing unit does not take its neighbours down (the
 * batch is re-run with a savepoint per unit). `run` resolves only once the commit
 * is as durable as STORE_SYNC asks: on disk ('full'), or in the OS ('normal').
 *
 * With `sync: 'full'` that fsync runs off the event loop: SQLite commits with
 * synchronous=NORMAL (frames written to the WAL, no sync), then the WAL file is
 * fsynced on libuv's thread pool, and only then do the batch's units resolve and
 * the relay hear of new outbox rows. Meanwhile the loop parses the next requests
 * and commits the next batch; one fsync covers every batch committed before it
 * started. A unit that reads a row committed but not yet synced (a retry finding
 * its ticket) resolves after a later fsync, so nothing is acknowledged before
 * what it saw is durable. Checkpoints sync the WAL and the database themselves.
 */

const TICKET_COLUMNS = 'id, number, channel, citizen_key, created_at, respond_by, state, acknowledged_at, responded_at, breached, matter, repeat_of, body';

/** A ticket row as this file keeps it: the shared shape plus its state and matter. */
export interface TicketRow extends SharedTicketRow {
  state: string;
  matter: string;
  breached: number;
}




/** A ticket's next deadline event: the warning, then the breach at respond_by. */
export interface DeadlineRow {
  ticket_id: string;
  kind: 'warning' | 'breach';
  due_at: number;
  respond_by: number;
}


interface Pending {
  fn: () => unknown;
  /** False: resolve at commit, without waiting for the fsync (see `run`). */
  durable: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A committed batch waiting for its WAL fsync. */
interface Committed {
  batch: Pending[];
  results: { ok: boolean; value: unknown }[];
  addedOutbox: boolean;
  /** Highest outbox seq written so far. */
  lastSeq: number;
  /** Callers of whenDurable() waiting for this batch's fsync. */
  waiters?: { resolve: () => void; reject: (e: unknown) => void }[];
  /** performance.now() when the oldest unit was queued, the commit started, and it ended. */
  queuedAt: number;
  startedAt: number;
  committedAt: number;
}

const MAX_BATCH = 1000;
/**
 * Outbox rows committed but not yet handed to the relay are also kept in memory,
 * up to this many, so the relay does not read back what was just written. Past it
 * (the broker is away) the relay reads the journal until it has caught up.
 */
const OUTBOX_CACHE_MAX = 5_000;
/** cacheFrom when the mirror is off (a number SQLite can compare seqs with). */
const CACHE_OFF = Number.MAX_SAFE_INTEGER;

/** The last ticket number handed out on a day. */
interface DayCounter {
  day: string;
  last: number;
}

/** In-memory state that a rolled-back unit must take back with it. */
interface Mark {
  lastSeq: number;
  outboxCount: number;
  cacheLength: number;
  counter: DayCounter | null;
  addedOutbox: boolean;
}


function errorText(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

function storeError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('STORE_UNAVAILABLE', `store write failed: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    detail: (err as { code?: string })?.code,
  });
}

export class Journal {
  readonly db: Database.Database;
  private queue: Pending[] = [];
  private flushScheduled = false;
  /** Flushes units queued by runSoon() when no run() comes along to take them first. */
  private lingerTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private outboxCount = 0;
  /** Set when the last commit failed; cleared by the next successful one. */
  lastWriteError: GatewayError | null = null;
  /** Called after every commit that added outbox rows. */
  onOutbox: () => void = () => {};
  /** Told each batch's timing once it is durable (or settled, without fsync). */
  onCommit: ((t: CommitTiming) => void) | null = null;
  /** When the oldest unit now queued was queued. */
  private queuedAt = 0;
  private addedOutbox = false;
  /**
   * Every outbox row with seq ≥ cacheFrom that the relay has not taken yet is in
   * `cache`, in seq order. CACHE_OFF = off until the relay catches up.
   */
  private cache: OutboxMessage[] = [];
  private cacheFrom = CACHE_OFF;
  /** Today's last ticket number; derived from the tickets at first use of a day. */
  private counter: DayCounter | null = null;
  /** The WAL file, fsynced off the loop before a batch resolves (sync 'full'); null = resolve at commit. */
  private walFd: number | null = null;
  private unsynced: Committed[] = [];
  /** The batches the fsync in flight covers; null when none runs. */
  private syncing: Committed[] | null = null;
  /** Outbox rows up to this seq are on disk; the relay takes nothing beyond it. */
  private durableSeq = CACHE_OFF;
  private lastSeq = 0;

  private readonly stmts;
  private readonly inTransaction: ReturnType<Journal['batchTransaction']>;

  /** Told each off-loop checkpoint's time and size; errors go to onCheckpointError. */
  onCheckpoint: ((r: CheckpointReport) => void) | null = null;
  onCheckpointError: (message: string) => void = () => {};
  private readonly checkpointer: Checkpointer | null;
  /** The checkpoint thread left frames behind; the next flush copies them (catchUp). */
  private catchUpDue = false;

  constructor(dataDir: string, opts: { sync: 'full' | 'normal'; checkpointEveryMs?: number }) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'gateway.sqlite'));
    this.db.pragma('journal_mode = WAL');
    // 'full' is NORMAL plus our own fsync of the WAL after each commit (see above).
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // Checkpoints run on their own thread (checkpointer.ts), off the event loop. This
    // connection's automatic checkpoint is only the backstop should that thread stop:
    // ≈200 MiB of WAL, never reached while it runs. The WAL file is cut back to 64 MiB
    // when it restarts after having grown past that (a broker outage's backlog).
    this.db.pragma(`wal_autocheckpoint = ${(opts.checkpointEveryMs ?? 1000) > 0 ? 50_000 : 10_000}`);
    this.db.pragma('journal_size_limit = 67108864');
    this.db.pragma('foreign_keys = OFF');
    this.db.exec(SCHEMA);
    migrate(this.db);
    this.inTransaction = this.batchTransaction();
    // The WAL exists from the first write (the schema) until close; SQLite keeps its locks
    // in the -shm file, so a descriptor of our own on the -wal file does not disturb them.
    if (opts.sync === 'full') this.walFd = openSync(join(dataDir, 'gateway.sqlite-wal'), 'r');
    const db = this.db;
    this.stmts = {
      insertTicket: db.prepare(
        `INSERT INTO tickets (id, number, channel, citizen_key, created_at, respond_by, matter, repeat_of, body, raw, acknowledged_at, due_at, due_kind)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      // The raw input stays in the journal for audit; day-to-day reads leave it on disk.
      getTicket: db.prepare(`SELECT ${TICKET_COLUMNS} FROM tickets WHERE id = ?`),
      getTicketByNumber: db.prepare(`SELECT ${TICKET_COLUMNS} FROM tickets WHERE number = ?`),
      ticketsSince: db.prepare(`SELECT ${TICKET_COLUMNS} FROM tickets WHERE created_at >= ? AND (? IS NULL OR channel = ?) ORDER BY created_at, number LIMIT ?`),
      recentByCitizen: db.prepare(
        `SELECT id, matter, repeat_of FROM tickets WHERE citizen_key = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 10`,
      ),
      getDedupe: db.prepare(`SELECT ticket_id, first_seen, last_seen FROM dedupe WHERE channel = ? AND key = ?`),
      upsertDedupe: db.prepare(
        `INSERT INTO dedupe (channel, key, ticket_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (channel, key) DO UPDATE SET ticket_id = excluded.ticket_id, first_seen = excluded.first_seen, last_seen = excluded.last_seen`,
      ),
      touchDedupe: db.prepare(`UPDATE dedupe SET last_seen = ? WHERE channel = ? AND key = ?`),
      insertRef: db.prepare(`INSERT OR IGNORE INTO refs (ref, ticket_id) VALUES (?, ?)`),
      getRef: db.prepare(`SELECT ticket_id FROM refs WHERE ref = ?`),
      // Numbers are YYYYMMDD-NNNNNN; '.' sorts right after '-', so the range is one day's numbers.
      lastNumber: db.prepare(`SELECT max(CAST(substr(number, 10) AS INTEGER)) AS last FROM tickets WHERE number > ? AND number < ?`),
      insertOutbox: db.prepare(
        `INSERT INTO outbox (routing_key, message_id, type, headers, body, created_at, ticket_ref) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      readOutbox: db.prepare(
        `SELECT o.seq, o.routing_key, o.message_id, o.type, o.headers, o.body, o.created_at, t.body AS ticket_body
         FROM outbox o LEFT JOIN tickets t ON o.ticket_ref IS NOT NULL AND t.id = o.ticket_ref
         WHERE o.seq > ? AND o.seq < ? ORDER BY o.seq LIMIT ?`,
      ),
      maxOutboxSeq: db.prepare(`SELECT max(seq) AS seq FROM outbox`),
      countOutbox: db.prepare(`SELECT count(*) AS n FROM outbox`),
      // The highest seq ever handed out (AUTOINCREMENT), also when those rows were confirmed and deleted since.
      topOutboxSeq: db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`),
      oldestOutbox: db.prepare(`SELECT created_at, routing_key FROM outbox ORDER BY seq LIMIT 1`),
      deleteOutboxRange: db.prepare(`DELETE FROM outbox WHERE seq BETWEEN ? AND ?`),
      dueDeadlines: db.prepare(`SELECT id AS ticket_id, due_kind AS kind, due_at, respond_by FROM tickets WHERE due_at <= ? ORDER BY due_at LIMIT ?`),
      nextDeadline: db.prepare(`SELECT min(due_at) AS due FROM tickets WHERE due_at IS NOT NULL`),
      advanceDue: db.prepare(`UPDATE tickets SET due_at = ?, due_kind = ? WHERE id = ? AND due_kind = ? AND due_at = ?`),
      clearDue: db.prepare(`UPDATE tickets SET due_at = NULL, due_kind = NULL WHERE id = ?`),
      countDeadlines: db.prepare(`SELECT count(*) AS n FROM tickets WHERE due_at IS NOT NULL`),
      // Both counts run on the partial indexes (tickets_due, tickets_breached), not the whole table.
      opsDeadlines: db.prepare(
        `SELECT count(*) AS open, coalesce(sum(due_kind = 'breach' OR due_at <= ?), 0) AS past, min(due_at) AS next FROM tickets WHERE due_at IS NOT NULL`,
      ),
      breachedSince: db.prepare(`SELECT count(*) AS n FROM tickets WHERE breached = 1 AND respond_by >= ?`),
      setBreached: db.prepare(`UPDATE tickets SET breached = 1 WHERE id = ?`),
      setAcknowledged: db.prepare(`UPDATE tickets SET acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL`),
      setResponded: db.prepare(`UPDATE tickets SET responded_at = ? WHERE id = ? AND responded_at IS NULL`),
      insertOutbound: db.prepare(
        `INSERT OR IGNORE INTO outbound (id, ticket_id, channel, kind, text, target, state, attempts, next_at, created_at)
         VALUES (@id, @ticket_id, @channel, @kind, @text, @target, 'pending', 0, @next_at, @created_at)`,
      ),
      getOutbound: db.prepare(`SELECT * FROM outbound WHERE id = ?`),
      dueOutbound: db.prepare(`SELECT * FROM outbound WHERE state = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?`),
      nextOutbound: db.prepare(`SELECT min(next_at) AS due FROM outbound WHERE state = 'pending'`),
      nextOutboundAfter: db.prepare(`SELECT min(next_at) AS due FROM outbound WHERE state = 'pending' AND next_at > ?`),
      outboundSent: db.prepare(
        `UPDATE outbound SET state = 'sent', sent_at = ?, via = ?, upstream_id = ?, attempts = attempts + 1, error = NULL WHERE id = ?`,
      ),
      outboundRetry: db.prepare(`UPDATE outbound SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?`),
      outboundFailed: db.prepare(`UPDATE outbound SET state = 'failed', attempts = attempts + 1, error = ? WHERE id = ?`),
      // The newest `limit`, returned oldest first.
      outboundByTicket: db.prepare(
        `SELECT * FROM (SELECT rowid AS r, * FROM outbound WHERE ticket_id = ? ORDER BY created_at DESC, r DESC LIMIT ?) ORDER BY created_at, r`,
      ),
      countReplies: db.prepare(`SELECT count(*) AS n FROM outbound WHERE ticket_id = ? AND kind = 'reply'`),
      leaseTake: db.prepare(
        `INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until WHERE leases.owner = excluded.owner OR leases.until < ?`,
      ),
      leaseDrop: db.prepare(`DELETE FROM leases WHERE name = ? AND owner = ?`),
      lastReplies: db.prepare(
        `SELECT * FROM (SELECT rowid AS seq_, * FROM outbound WHERE ticket_id = ? AND kind = 'reply' ORDER BY created_at DESC, rowid DESC LIMIT ?)
         ORDER BY created_at, seq_`,
      ),
      outboundDelivery: db.prepare(`UPDATE outbound SET delivery = ? WHERE channel = ? AND upstream_id = ?`),
      kvGet: db.prepare(`SELECT value FROM kv WHERE channel = ? AND key = ?`),
      kvSet: db.prepare(
        `INSERT INTO kv (channel, key, value) VALUES (?, ?, ?) ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value`,
      ),
      partPut: db.prepare(
        `INSERT OR IGNORE INTO parts (channel, grp, idx, data, meta, received_at) VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      partsGet: db.prepare(`SELECT idx, data, meta, received_at FROM parts WHERE channel = ? AND grp = ? ORDER BY idx`),
      partsDrop: db.prepare(`DELETE FROM parts WHERE channel = ? AND grp = ?`),
      partsStale: db.prepare(
        `SELECT grp, min(received_at) AS first FROM parts WHERE channel = ? GROUP BY grp HAVING first < ? ORDER BY first LIMIT ?`,
      ),
      probe: db.prepare(`INSERT OR REPLACE INTO kv (channel, key, value) VALUES ('_store', 'probe', ?)`),
    };
    this.outboxCount = (this.stmts.countOutbox.get() as { n: number }).n;
    this.lastSeq = this.topSeq();
    // 0 leaves checkpoints to SQLite's own, on this connection (a read-only command-line look).
    const every = opts.checkpointEveryMs ?? 1000;
    this.checkpointer =
      every > 0
        ? new Checkpointer(
            this.db.name,
            every,
            (r) => {
              // Frames committed during its passes are left: this connection copies them
              // before its next write, so that write starts the WAL over (see catchUp).
              if (r.frames > 0) this.catchUpDue = true;
              this.onCheckpoint?.(r);
            },
            (m) => this.onCheckpointError(m),
          )
        : null;
    // What a restart finds is on disk already.
    if (this.walFd !== null) this.durableSeq = this.lastSeq;
  }

  // ---- group commit ---------------------------------------------------------

  /**
   * Queue a unit of work; it runs inside a transaction with others and resolves after the commit.
   * `durable: false` is for writes whose loss in a crash costs nothing but a repeat (deleting
   * outbox rows the broker confirmed: lost, they are published again and deduped by messageId).
   * A batch of only such units resolves at commit and asks for no fsync of its own; the next
   * durable batch's fsync covers it. At ordinary rates the confirms arrive apart from the
   * requests, so this halves the fsyncs.
   */
  run<T>(fn: () => T, opts?: { durable?: boolean }): Promise<T> {
    if (this.closed) return Promise.reject(new GatewayError('STORE_CLOSED', 'store is closed'));
    return new Promise<T>((resolve, reject) => {
      // The batch's wait counts from the unit that starts it; runSoon units queued before only joined it.
      if (!this.flushScheduled) this.queuedAt = performance.now();
      this.queue.push({ fn, durable: opts?.durable ?? true, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Like run(), for a unit that does not need a transaction and an fsync of its own:
   * it joins the next batch anybody else starts, or is flushed after `lingerMs`. One
   * SMS at a time (deliver_sm window 1) otherwise costs two commits and two fsyncs per
   * message, the ticket's and its receipt's "sent" mark, and the ticket's fsync queues
   * behind the mark's; with the mark riding along, each message costs one of each.
   * `durable` as for run().
   */
  runSoon<T>(fn: () => T, lingerMs: number, opts?: { durable?: boolean }): Promise<T> {
    if (this.closed) return Promise.reject(new GatewayError('STORE_CLOSED', 'store is closed'));
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length === 0) this.queuedAt = performance.now();
      this.queue.push({ fn, durable: opts?.durable ?? true, resolve: resolve as (v: unknown) => void, reject });
      if (this.flushScheduled || this.lingerTimer) return;
      this.lingerTimer = setTimeout(() => {
        this.lingerTimer = null;
        if (!this.flushScheduled) this.flush();
      }, lingerMs);
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      const queuedAt = this.queuedAt;
      const startedAt = performance.now();
      if (this.catchUpDue) this.catchUp();
      const before = this.mark();
      this.addedOutbox = false;
      let results: { ok: boolean; value: unknown }[];
      try {
        results = this.runBatch(batch, false);
      } catch {
        // A unit threw (an unknown ticket, a refused schema) or the commit failed: the
        // whole transaction rolled back. Run the batch again with a savepoint per unit,
        // so only the failing units fail. Units touch nothing but the database (and the
        // store's own in-memory mirror, rolled back with it), so running them twice is safe.
        this.restore(before);
        try {
          results = this.runBatch(batch, true);
        } catch (err) {
          this.restore(before);
          const e = storeError(err);
          this.lastWriteError = e;
          for (const item of batch) item.reject(e);
          continue;
        }
      }
      this.lastWriteError = null;
      const committed: Committed = {
        batch,
        results,
        addedOutbox: this.addedOutbox,
        lastSeq: this.lastSeq,
        queuedAt,
        startedAt,
        committedAt: performance.now(),
      };
      if (this.walFd === null || !batch.some((p) => p.durable)) this.settle(committed);
      else {
        this.unsynced.push(committed);
        this.syncWal();
      }
    }
  }

  private settle(c: Committed): void {
    if (this.onCommit) {
      this.onCommit({
        units: c.batch.length,
        queuedMs: c.startedAt - c.queuedAt,
        commitMs: c.committedAt - c.startedAt,
        durableMs: performance.now() - c.committedAt,
      });
    }
    c.batch.forEach((item, i) => {
      const r = c.results[i]!;
      if (r.ok) item.resolve(r.value);
      // A database failure is the store's (transient); anything a unit threw itself (a refused
      // ticket, a caller's callback) reaches the caller unchanged.
      else item.reject(r.value instanceof Database.SqliteError ? storeError(r.value) : r.value);
    });
    if (c.addedOutbox) this.onOutbox();
  }

  /**
   * A write starts the WAL over only if its transaction begins with every frame
   * already copied. The checkpoint thread runs beside this connection's commits, which
   * at a few hundred a second always overlap it (measured: with commits every 2 ms the
   * WAL never started over, and grew until the backstop's checkpoint stalled the loop
   * after all). Here, between two commits by construction, the few frames the thread
   * left (the last milliseconds of writes) are copied, and the write that follows
   * starts the WAL from the beginning. About a millisecond, once per interval.
   */
  private catchUp(): void {
    this.catchUpDue = false;
    const t = performance.now();
    try {
      const [r] = this.db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
      this.onCheckpoint?.({ ms: performance.now() - t, frames: Math.max(0, r!.checkpointed), busy: r!.busy === 1, onLoop: true });
    } catch (err) {
      this.onCheckpointError(errorText(err));
    }
  }

  /** One fsync at a time; batches committed while it runs wait for the next one. */
  private syncWal(): void {
    if (this.syncing || this.unsynced.length === 0 || this.walFd === null) return;
    const waiting = this.unsynced;
    this.syncing = waiting;
    this.unsynced = [];
    // fdatasync: the WAL's frames and its size when it grew, not its timestamps (what SQLite
    // itself uses on Linux); a crash loses nothing acknowledged, and a WAL reused after a
    // checkpoint costs no inode write per commit.
    fdatasync(this.walFd, (err) => {
      this.syncing = null;
      if (err) {
        // Not on disk, so not acknowledged: the upstream retries, and the retry finds the
        // committed ticket and answers once a later fsync succeeds.
        const e = storeError(err);
        this.lastWriteError = e;
        for (const c of waiting) {
          for (const item of c.batch) item.reject(e);
          for (const w of c.waiters ?? []) w.reject(e);
        }
      } else {
        this.durableSeq = Math.max(this.durableSeq, waiting.at(-1)!.lastSeq);
        for (const c of waiting) {
          this.settle(c);
          for (const w of c.waiters ?? []) w.resolve();
        }
      }
      this.syncWal();
    });
  }

  /**
   * Resolves once everything committed so far is on disk (rejects if that fsync
   * fails): for work that acts outside the store (sending a receipt) on rows it
   * read, which may be committed but not yet synced.
   */
  whenDurable(): Promise<void> {
    const last = this.unsynced.at(-1) ?? this.syncing?.at(-1);
    if (!last) return Promise.resolve();
    return new Promise((resolve, reject) => (last.waiters ??= []).push({ resolve, reject }));
  }

  private mark(): Mark {
    return { lastSeq: this.lastSeq, outboxCount: this.outboxCount, cacheLength: this.cache.length, counter: this.counter && { ...this.counter }, addedOutbox: this.addedOutbox };
  }

  private restore(m: Mark): void {
    this.lastSeq = m.lastSeq;
    this.outboxCount = m.outboxCount;
    this.cache.length = Math.min(this.cache.length, m.cacheLength);
    this.counter = m.counter;
    this.addedOutbox = m.addedOutbox;
  }

  /**
   * One transaction for the batch. Without savepoints (the common case, two fewer
   * statements per unit) any unit's error aborts it; with savepoints a failing unit
   * rolls back alone and its error is returned in its slot.
   */
  private runBatch(batch: Pending[], isolate: boolean): { ok: boolean; value: unknown }[] {
    const results: { ok: boolean; value: unknown }[] = [];
    this.inTransaction(batch, isolate, results);
    return results;
  }

  /** Built once: db.transaction() compiles a wrapper (and its savepoint variants) per call. */
  private batchTransaction() {
    const savepoint = (fn: () => unknown) => fn();
    const nested = this.db.transaction(savepoint);
    return this.db.transaction((batch: Pending[], isolate: boolean, results: { ok: boolean; value: unknown }[]) => {
      for (const item of batch) {
        if (!isolate) {
          results.push({ ok: true, value: item.fn() });
          continue;
        }
        const before = this.mark();
        try {
          // Nested transaction = SAVEPOINT.
          results.push({ ok: true, value: nested(item.fn) });
        } catch (err) {
          this.restore(before);
          results.push({ ok: false, value: err });
        }
      }
    });
  }

  // ---- writes: call only inside run() ---------------------------------------

  /** A new ticket, with its first deadline event (the warning) due at `due`. */
  insertTicket(row: Omit<TicketRow, 'state' | 'responded_at' | 'breached'>, raw: Buffer, due: { at: number; kind: 'warning' | 'breach' }): void {
    // Positional: binding by name costs a property look-up per column on every ticket.
    this.stmts.insertTicket.run(row.id, row.number, row.channel, row.citizen_key, row.created_at, row.respond_by, row.matter, row.repeat_of, row.body, raw, row.acknowledged_at, due.at, due.kind);
  }

  /**
   * The day's next ticket number. Kept in memory (and rolled back with a failed
   * unit); the tickets themselves are the durable record, so a restart resumes
   * after the highest number stored.
   */
  nextNumber(day: string): number {
    if (this.counter?.day !== day) {
      this.counter = { day, last: (this.stmts.lastNumber.get(`${day}-`, `${day}.`) as { last: number | null }).last ?? 0 };
    }
    return ++this.counter.last;
  }

  setDedupe(channel: string, key: string, ticketId: string, now: number): void {
    this.stmts.upsertDedupe.run(channel, key, ticketId, now, now);
  }

  touchDedupe(channel: string, key: string, now: number): void {
    this.stmts.touchDedupe.run(now, channel, key);
  }

  addRef(ref: string, ticketId: string): void {
    this.stmts.insertRef.run(ref, ticketId);
  }

  addOutbox(msg: OutboxInsert, now: number): void {
    const headers = JSON.stringify(msg.headers);
    const body = outboxBody(msg);
    const seq = Number(this.stmts.insertOutbox.run(msg.routingKey, msg.messageId, msg.type, headers, msg.ticketRef ? '' : body, now, msg.ticketRef ?? null).lastInsertRowid);
    this.addedOutbox = true;
    // Seqs come from AUTOINCREMENT, so a gap means another process (the command line's
    // replay) journaled rows since our last one: the mirror lacks them, read the file.
    if (seq !== this.lastSeq + 1) this.forgetMirror();
    else this.outboxCount++;
    this.lastSeq = seq;
    if (seq >= this.cacheFrom) {
      if (this.cache.length < OUTBOX_CACHE_MAX) {
        this.cache.push(writtenOutboxMessage(seq, msg, body, now));
      } else {
        // Too far behind: drop the mirror; the relay reads the journal until it catches up.
        this.cache = [];
        this.cacheFrom = CACHE_OFF;
      }
    }
  }

  /**
   * Moves a ticket's fired deadline on: warning → breach at `next`, breach → none.
   * False when it had already moved (a reply cancelled it, or it fired meanwhile).
   */
  advanceDue(ticketId: string, fired: { kind: 'warning' | 'breach'; at: number }, next: { kind: 'breach'; at: number } | null): boolean {
    return this.stmts.advanceDue.run(next?.at ?? null, next?.kind ?? null, ticketId, fired.kind, fired.at).changes > 0;
  }

  cancelDeadlines(ticketId: string): void {
    this.stmts.clearDue.run(ticketId);
  }

  setBreached(ticketId: string): void {
    this.stmts.setBreached.run(ticketId);
  }

  setAcknowledged(ticketId: string, at: number): boolean {
    return this.stmts.setAcknowledged.run(at, ticketId).changes > 0;
  }

  setResponded(ticketId: string, at: number): boolean {
    return this.stmts.setResponded.run(at, ticketId).changes > 0;
  }

  addOutbound(row: { id: string; ticket_id: string | null; channel: string; kind: string; text: string; target: string; next_at: number; created_at: number }): boolean {
    return this.stmts.insertOutbound.run(row).changes > 0;
  }

  outboundSent(id: string, at: number, via: string, upstreamId: string | null): void {
    this.stmts.outboundSent.run(at, via, upstreamId, id);
  }

  outboundRetry(id: string, nextAt: number, error: string): void {
    this.stmts.outboundRetry.run(nextAt, error, id);
  }

  outboundFailed(id: string, error: string): void {
    this.stmts.outboundFailed.run(error, id);
  }

  outboundDelivery(channel: string, upstreamId: string, status: string): boolean {
    return this.stmts.outboundDelivery.run(status, channel, upstreamId).changes > 0;
  }

  kvSet(channel: string, key: string, value: string): void {
    this.stmts.kvSet.run(channel, key, value);
  }

  putPart(channel: string, group: string, index: number, data: Buffer, meta: string, now: number): void {
    this.stmts.partPut.run(channel, group, index, data, meta, now);
  }

  dropParts(channel: string, group: string): void {
    this.stmts.partsDrop.run(channel, group);
  }

  // ---- reads (safe anywhere: SQLite reads see committed data) --------------

  getTicketRow(id: string): TicketRow | undefined {
    return this.stmts.getTicket.get(id) as TicketRow | undefined;
  }

  ticketsSince(since: number, channel: string | null, limit: number): TicketRow[] {
    return this.stmts.ticketsSince.all(since, channel, channel, limit) as TicketRow[];
  }

  getTicketRowByNumber(number: string): TicketRow | undefined {
    return this.stmts.getTicketByNumber.get(number) as TicketRow | undefined;
  }

  /** Newest first, read lazily: the caller usually stops at the first (most recent) match. */
  recentByCitizen(citizenKey: string, since: number): IterableIterator<{ id: string; matter: string; repeat_of: string | null }> {
    return this.stmts.recentByCitizen.iterate(citizenKey, since) as IterableIterator<{ id: string; matter: string; repeat_of: string | null }>;
  }

  getDedupe(channel: string, key: string): { ticket_id: string; first_seen: number; last_seen: number } | undefined {
    return this.stmts.getDedupe.get(channel, key) as { ticket_id: string; first_seen: number; last_seen: number } | undefined;
  }

  /** A ticket named by a ticket number or an upstream id (Message-ID of a mail or of our receipt). */
  getRef(ref: string): string | undefined {
    if (/^\d{8}-\d{6,}$/.test(ref)) return this.getTicketRowByNumber(ref)?.id;
    return (this.stmts.getRef.get(ref) as { ticket_id: string } | undefined)?.ticket_id;
  }

  /**
   * Up to `limit` journaled messages after `afterSeq`, in order: from the in-memory
   * mirror when it covers that range, else from the file. The relay calls this with
   * a cursor it only moves forward, and with 0 after a reconnect (after `resetRelay`).
   */
  readOutbox(afterSeq: number, limit: number): OutboxMessage[] {
    if (afterSeq + 1 < this.cacheFrom) {
      const rows = (this.stmts.readOutbox.all(afterSeq, Math.min(this.cacheFrom, this.durableSeq + 1), limit) as OutboxRow[]).map(toOutboxMessage);
      if (rows.length === limit) return rows;
      if (this.cacheFrom === CACHE_OFF) {
        const max = (this.stmts.maxOutboxSeq.get() as { seq: number | null }).seq ?? 0;
        const reached = Math.max(rows.at(-1)?.seq ?? 0, afterSeq);
        // Rows past `reached` are still waiting for their fsync: read them from the file later.
        if (max > reached) return rows;
        // Caught up with the file: from here on, new rows are served from memory.
        this.cacheFrom = reached + 1;
        this.cache = [];
      }
      if (rows.length > 0) return rows;
      afterSeq = this.cacheFrom - 1;
    }
    let skip = 0;
    while (skip < this.cache.length && this.cache[skip]!.seq <= afterSeq) skip++;
    // Only what is on disk leaves.
    let end = skip;
    while (end < this.cache.length && end - skip < limit && this.cache[end]!.seq <= this.durableSeq) end++;
    const out = this.cache.slice(skip, end);
    this.cache.splice(0, end);
    return out;
  }

  private topSeq(): number {
    return Math.max((this.stmts.maxOutboxSeq.get() as { seq: number | null }).seq ?? 0, (this.stmts.topOutboxSeq.get() as { seq: number } | undefined)?.seq ?? 0);
  }

  /** Rows were journaled by someone else: the relay reads the file until it has caught up, and the depth is counted again. */
  private forgetMirror(): void {
    this.cache = [];
    this.cacheFrom = CACHE_OFF;
    this.outboxCount = (this.stmts.countOutbox.get() as { n: number }).n;
  }

  /**
   * True when another process journaled outbox rows after our last one (a replay
   * by the command line while this gateway runs): they are counted and the mirror
   * is dropped, so the relay reads them from the file once they are durable. Call
   * outside run(), between units.
   */
  adoptForeignOutbox(): boolean {
    if (this.closed) return false;
    let top: number;
    try {
      top = this.topSeq();
    } catch {
      // An unreadable file (a disk gone away) shows on the next unit and on /readyz; this look only tries again.
      return false;
    }
    if (top <= this.lastSeq) return false;
    try {
      this.forgetMirror();
    } catch {
      return false;
    }
    this.lastSeq = top;
    return true;
  }

  /** About how many rows the relay could take now (a lot when it must read the file). */
  readyCount(): number {
    return this.cacheFrom === CACHE_OFF ? Number.MAX_SAFE_INTEGER : this.cache.length;
  }

  /** True when the relay, at `afterSeq`, still has journaled messages to take. */
  hasOutboxAfter(afterSeq: number): boolean {
    if (this.cache.length > 0 && this.cache.at(-1)!.seq > afterSeq) return true;
    if (afterSeq + 1 >= this.cacheFrom) return false;
    return this.stmts.readOutbox.all(afterSeq, this.cacheFrom, 1).length > 0;
  }

  /** The relay starts over from the journal (after a reconnect, everything unconfirmed is sent again). */
  resetRelay(): void {
    this.cache = [];
    this.cacheFrom = CACHE_OFF;
  }

  /**
   * Confirmed rows leave the outbox; call inside run(). Losing a delete in a crash only
   * means a re-publish, which consumers dedupe by messageId.
   */
  deleteOutbox(seqs: number[]): void {
    if (seqs.length === 0) return;
    // Confirms arrive roughly in order, so most batches are a few contiguous ranges.
    const sorted = [...seqs].sort((a, b) => a - b);
    let n = 0;
    for (let i = 0; i < sorted.length; ) {
      let j = i;
      while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
      n += this.stmts.deleteOutboxRange.run(sorted[i], sorted[j]).changes;
      i = j + 1;
    }
    this.outboxCount -= n;
  }

  outboxDepth(): number {
    return this.outboxCount;
  }

  /** Depth and the oldest row as the file has them (rows another process added included). */
  outboxSummary(): { depth: number; oldestAt: number | null; oldestRoutingKey: string | null } {
    const depth = (this.stmts.countOutbox.get() as { n: number }).n;
    const oldest = this.stmts.oldestOutbox.get() as { created_at: number; routing_key: string } | undefined;
    return { depth, oldestAt: oldest?.created_at ?? null, oldestRoutingKey: oldest?.routing_key ?? null };
  }

  /** Tickets whose next deadline event is due, earliest first. */
  dueDeadlines(now: number, limit: number): DeadlineRow[] {
    return this.stmts.dueDeadlines.all(now, limit) as DeadlineRow[];
  }

  nextDeadline(): number | null {
    return (this.stmts.nextDeadline.get() as { due: number | null }).due;
  }

  openDeadlines(): number {
    return (this.stmts.countDeadlines.get() as { n: number }).n;
  }

  opsSummary(now: number, dayStart: number): OpsSummary {
    const d = this.stmts.opsDeadlines.get(now) as { open: number; past: number; next: number | null };
    const b = this.stmts.breachedSince.get(dayStart) as { n: number };
    const o = this.stmts.oldestOutbox.get() as { created_at: number } | undefined;
    return { open: d.open, pastWarning: d.past, breachedToday: b.n, nextDue: d.next, outboxOldestAt: o?.created_at ?? null };
  }

  getOutbound(id: string): OutboundRow | undefined {
    return this.stmts.getOutbound.get(id) as OutboundRow | undefined;
  }

  dueOutbound(now: number, limit: number): OutboundRow[] {
    return this.stmts.dueOutbound.all(now, limit) as OutboundRow[];
  }

  nextOutbound(): number | null {
    return (this.stmts.nextOutbound.get() as { due: number | null }).due;
  }

  nextOutboundAfter(now: number): number | null {
    return (this.stmts.nextOutboundAfter.get(now) as { due: number | null }).due;
  }

  outboundByTicket(ticketId: string, limit: number): OutboundRow[] {
    return this.stmts.outboundByTicket.all(ticketId, limit) as OutboundRow[];
  }

  countReplies(ticketId: string): number {
    return (this.stmts.countReplies.get(ticketId) as { n: number }).n;
  }

  /** Call inside run(). */
  takeLease(name: string, owner: string, until: number, now: number): boolean {
    return this.stmts.leaseTake.run(name, owner, until, now).changes > 0;
  }

  dropLease(name: string, owner: string): void {
    this.stmts.leaseDrop.run(name, owner);
  }

  /** A ticket's last `limit` replies, oldest first. */
  lastReplies(ticketId: string, limit: number): OutboundRow[] {
    return this.stmts.lastReplies.all(ticketId, limit) as OutboundRow[];
  }

  kvGet(channel: string, key: string): string | null {
    return (this.stmts.kvGet.get(channel, key) as { value: string } | undefined)?.value ?? null;
  }

  getParts(channel: string, group: string): StoredPart[] {
    return (this.stmts.partsGet.all(channel, group) as { idx: number; data: Buffer; meta: string; received_at: number }[]).map((r) => ({
      index: r.idx,
      data: r.data,
      meta: r.meta,
      receivedAt: new Date(r.received_at),
    }));
  }

  staleGroups(channel: string, before: number, limit: number): string[] {
    return (this.stmts.partsStale.all(channel, before, limit) as { grp: string }[]).map((r) => r.grp);
  }

  /** A real write, for /readyz: a read-only or full disk shows here before a citizen's message hits it. */
  probeWrite(now: number): GatewayError | null {
    if (this.closed) return new GatewayError('STORE_CLOSED', 'store is closed');
    try {
      this.stmts.probe.run(String(now));
      this.lastWriteError = null;
      return null;
    } catch (err) {
      this.lastWriteError = storeError(err);
      return this.lastWriteError;
    }
  }

  /** Wait for queued writes and their fsync, then close. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.lingerTimer && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    while (this.queue.length > 0 || this.flushScheduled || this.syncing !== null || this.unsynced.length > 0) {
      await new Promise((r) => setImmediate(r));
    }
    this.closed = true;
    // Its connection first: the last connection to close checkpoints and removes the WAL.
    await this.checkpointer?.stop();
    try {
      this.db.close();
    } catch {
      // Closing a database whose disk went away cannot be helped; the WAL is replayed at next open.
    }
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
