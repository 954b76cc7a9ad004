import type { Channel } from '../../ticket.js';
import type { NewTicket, RecentTicket, TicketChange, TicketRecord } from '../types.js';
import { first, query, rows, type Db } from './db.js';
import { toTicketRecord, type TicketRow } from '../rows.js';

/** Tickets, their numbers, dedupe keys and refs. The raw input stays in the table for audit; reads leave it there. */

const COLS = 'id, number, channel, citizen_key, created_at, respond_by, acknowledged_at, responded_at, breached, repeat_of, body';



export async function getTicket(db: Db, id: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE id = $1`, [id]);
  return r ? toTicketRecord(r) : null;
}

/** The row locked until the unit ends: changes to one ticket are applied one at a time, cluster-wide. */
export async function lockTicket(db: Db, id: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE id = $1 FOR UPDATE`, [id]);
  return r ? toTicketRecord(r) : null;
}

export async function getTicketByNumber(db: Db, number: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE number = $1`, [number]);
  return r ? toTicketRecord(r) : null;
}

/** Tickets received at or after `since`, oldest first (operations: replay, look-ups). */
export async function listTickets(db: Db, since: number, channel: string | null, limit: number): Promise<TicketRecord[]> {
  const rs = await rows<TicketRow>(
    db,
    `SELECT ${COLS} FROM tickets WHERE created_at >= $1 AND ($2::text IS NULL OR channel = $2) ORDER BY created_at, number LIMIT $3`,
    [since, channel, limit],
  );
  return rs.map(toTicketRecord);
}

/**
 * The first of `refs` that names a ticket, in the order given: a ticket number
 * (YYYYMMDD-NNNNNN) by its number, anything else through the refs table. One
 * round trip for all of them.
 */
export async function ticketNamedBy(db: Db, refs: string[]): Promise<TicketRecord | null> {
  if (refs.length === 0) return null;
  const r = await first<TicketRow>(
    db,
    `SELECT ${COLS.split(', ').map((c) => `t.${c}`).join(', ')}
       FROM unnest($1::text[]) WITH ORDINALITY AS x(ref, ord)
       JOIN tickets t ON t.id = CASE WHEN x.ref ~ '^[0-9]{8}-[0-9]{6,}$'
                                     THEN (SELECT n.id FROM tickets n WHERE n.number = x.ref)
                                     ELSE (SELECT f.ticket_id FROM refs f WHERE f.ref = x.ref) END
      ORDER BY x.ord LIMIT 1`,
    [refs],
  );
  return r ? toTicketRecord(r) : null;
}

/**
 * Serializes every unit about the same upstream message, on any instance, until
 * the unit ends. Sent right behind the unit's BEGIN, in the same write (the pool
 * runs in pipeline mode); the unit's reads follow in their own statement, so their
 * snapshot is taken after the lock is granted.
 */
export async function lockKey(db: Db, channel: string, key: string): Promise<void> {
  await query(db, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`${channel}:${key}`]);
}

export interface AcceptReads {
  /** A dedupe row exists for the key (within its window or not). */
  seen: boolean;
  /** The ticket the key implies: the dedupe row's while it counts, else the keyed id. */
  seenId: string | null;
  /** That ticket, when it exists: the message is a duplicate of it. */
  earlier: TicketRecord | null;
  /** The first of the thread refs that names a ticket. */
  open: TicketRecord | null;
  /** The citizen's tickets since `since`, newest first, at most 10. */
  recent: RecentTicket[];
}

const T_COLS = COLS.split(', ').map((c) => `t.${c}`).join(', ');
const N_COLS = COLS.split(', ').map((c) => `n.${c}`).join(', ');

/**
 * Everything accept reads, in one statement taken after the key's lock (under
 * READ COMMITTED its snapshot is then newer than any unit that held the lock):
 * the dedupe row and the ticket it implies (the row's ticket while the key
 * counts as seen — no window, or last seen within it — else the keyed id), the
 * ticket the thread refs name (a ticket number by its number, anything else
 * through the refs table, first match in the order given), and the citizen's
 * recent tickets. The same statement
 * touches the dedupe row's last_seen when it implies a ticket; the reads see the
 * row as it was before (a data-modifying CTE's effect is not visible to the
 * statement's own reads), which is what decides whether it counted as seen. On a
 * duplicate the last two reads go unused: cheaper than a round trip of their own.
 */
const ACCEPT_READS = `
WITH
touch AS (
  UPDATE dedupe SET last_seen = $4::bigint
   WHERE channel = $1 AND key = $2 AND ($5::text IS NOT NULL OR $3::bigint IS NULL OR $4::bigint - last_seen < $3::bigint)
),
named AS (
  SELECT ${N_COLS}
    FROM unnest($6::text[]) WITH ORDINALITY AS x(ref, ord)
    JOIN tickets n ON n.id = CASE WHEN x.ref ~ '^[0-9]{8}-[0-9]{6,}$'
                                  THEN (SELECT m.id FROM tickets m WHERE m.number = x.ref)
                                  ELSE (SELECT f.ticket_id FROM refs f WHERE f.ref = x.ref) END
   ORDER BY x.ord LIMIT 1
)
SELECT d.ticket_id AS seen_id, ($3::bigint IS NULL OR $4::bigint - d.last_seen < $3::bigint) AS seen_valid, ${T_COLS},
       (SELECT row_to_json(named) FROM named) AS named,
       (SELECT json_agg(json_build_object('id', r.id, 'matter', r.matter, 'repeatOf', r.repeat_of) ORDER BY r.created_at DESC)
          FROM (SELECT id, matter, repeat_of, created_at FROM tickets
                 WHERE citizen_key = $7 AND created_at >= $8::bigint ORDER BY created_at DESC LIMIT 10) r) AS recent
  FROM (SELECT 1) one
  LEFT JOIN dedupe d ON d.channel = $1 AND d.key = $2
  LEFT JOIN tickets t ON t.id = CASE WHEN d.ticket_id IS NOT NULL AND ($3::bigint IS NULL OR $4::bigint - d.last_seen < $3::bigint)
                                     THEN d.ticket_id ELSE $5::text END`;

export async function acceptReads(
  db: Db,
  q: { channel: string; key: string; windowMs: number | null; now: number; keyedId: string | null; refs: string[]; citizenKey: string; since: number },
): Promise<AcceptReads> {
  const r = await first<Partial<TicketRow> & { seen_id: string | null; seen_valid: boolean | null; named: TicketRow | null; recent: RecentTicket[] | null }>(
    db,
    ACCEPT_READS,
    [q.channel, q.key, q.windowMs, q.now, q.keyedId, q.refs, q.citizenKey, q.since],
  );
  const seen = r?.seen_id != null;
  return {
    seen,
    seenId: seen && r!.seen_valid ? r!.seen_id! : q.keyedId,
    earlier: r?.id ? toTicketRecord(r as TicketRow) : null,
    // json keeps the body text exactly (a string value), and the bigints are far below 2^53.
    open: r?.named ? toTicketRecord(r.named) : null,
    recent: r?.recent ?? [],
  };
}

/** True when the key was not recorded before (and now is). */
export async function recordKey(db: Db, channel: string, key: string, now: number): Promise<boolean> {
  const r = await query(
    db,
    `INSERT INTO dedupe (channel, key, ticket_id, first_seen, last_seen) VALUES ($1, $2, '', $3, $3) ON CONFLICT (channel, key) DO NOTHING`,
    [channel, key, now],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Reserves `count` numbers of the day for the caller and returns the last of
 * them (the block is last - count + 1 … last). Run on its own, outside any unit:
 * the counter row is locked only for this statement, so accepts across the
 * cluster no longer queue on it; a reserved number is never handed out twice,
 * whatever happens to the units that use it.
 */
export async function reserveNumbers(db: Db, day: string, count: number): Promise<number> {
  const r = await first<{ last: number }>(
    db,
    `INSERT INTO ticket_counters (day, last) VALUES ($1, $2) ON CONFLICT (day) DO UPDATE SET last = ticket_counters.last + $2 RETURNING last`,
    [day, count],
  );
  return r!.last;
}

/**
 * Hands back the unused end `from … last` of a block when no instance reserved
 * numbers of the day after it (the counter still stands at `last`); otherwise
 * they stay a gap. Nothing at or above `from` was handed out.
 */
export async function returnNumbers(db: Db, day: string, from: number, last: number): Promise<void> {
  await query(db, `UPDATE ticket_counters SET last = $2 - 1 WHERE day = $1 AND last = $3`, [day, from, last]);
}

/** The record of a ticket just written (in the unit's closing statement, see writes.ts). */
export function newRecord(channel: Channel, t: NewTicket): TicketRecord {
  return {
    id: t.id,
    number: t.number,
    channel,
    citizenKey: t.citizenKey,
    createdAt: t.createdAt,
    respondBy: t.respondBy,
    acknowledgedAt: t.acknowledgedAt,
    respondedAt: null,
    breached: false,
    repeatOf: t.repeatOf,
    ticket: t.ticket,
    json: t.json,
  };
}

/** Applies the lifecycle fields of `change` (its writes are applied by the caller) and returns the ticket as it now is. */
export async function applyChange(db: Db, id: string, change: TicketChange): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(
    db,
    `UPDATE tickets SET acknowledged_at = COALESCE($2, acknowledged_at),
                        responded_at = COALESCE($3, responded_at),
                        breached = breached OR $4,
                        due_at = CASE WHEN $5 THEN NULL ELSE due_at END,
                        due_kind = CASE WHEN $5 THEN NULL ELSE due_kind END
      WHERE id = $1 RETURNING ${COLS}`,
    [id, change.acknowledgedAt ?? null, change.respondedAt ?? null, change.breached === true, change.clearDue === true],
  );
  return r ? toTicketRecord(r) : null;
}
