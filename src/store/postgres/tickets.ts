import type { Channel, Ticket } from '../../ticket.js';
import type { NewTicket, RecentTicket, TicketChange, TicketRecord } from '../types.js';
import { first, query, rows, type Db } from './db.js';

/** Tickets, their numbers, dedupe keys and refs. The raw input stays in the table for audit; reads leave it there. */

const COLS = 'id, number, channel, citizen_key, created_at, respond_by, acknowledged_at, responded_at, breached, repeat_of, body';

export interface TicketRow {
  id: string;
  number: string;
  channel: string;
  citizen_key: string;
  created_at: number;
  respond_by: number;
  acknowledged_at: number | null;
  responded_at: number | null;
  breached: boolean;
  repeat_of: string | null;
  body: string;
}

export function toRecord(r: TicketRow): TicketRecord {
  return {
    id: r.id,
    number: r.number,
    channel: r.channel as Channel,
    citizenKey: r.citizen_key,
    createdAt: r.created_at,
    respondBy: r.respond_by,
    acknowledgedAt: r.acknowledged_at,
    respondedAt: r.responded_at,
    breached: r.breached,
    repeatOf: r.repeat_of,
    ticket: JSON.parse(r.body) as Ticket,
    json: r.body,
  };
}

export async function getTicket(db: Db, id: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE id = $1`, [id]);
  return r ? toRecord(r) : null;
}

/** The row locked until the unit ends: changes to one ticket are applied one at a time, cluster-wide. */
export async function lockTicket(db: Db, id: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE id = $1 FOR UPDATE`, [id]);
  return r ? toRecord(r) : null;
}

export async function getTicketByNumber(db: Db, number: string): Promise<TicketRecord | null> {
  const r = await first<TicketRow>(db, `SELECT ${COLS} FROM tickets WHERE number = $1`, [number]);
  return r ? toRecord(r) : null;
}

/** Tickets received at or after `since`, oldest first (operations: replay, look-ups). */
export async function listTickets(db: Db, since: number, channel: string | null, limit: number): Promise<TicketRecord[]> {
  const rs = await rows<TicketRow>(
    db,
    `SELECT ${COLS} FROM tickets WHERE created_at >= $1 AND ($2::text IS NULL OR channel = $2) ORDER BY created_at, number LIMIT $3`,
    [since, channel, limit],
  );
  return rs.map(toRecord);
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
  return r ? toRecord(r) : null;
}

/** Serializes every unit about the same upstream message, on any instance, until the unit ends. */
export async function lockKey(db: Db, channel: string, key: string): Promise<void> {
  await query(db, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`${channel}:${key}`]);
}

/**
 * The dedupe row of the key and, in the same round trip, the ticket it implies:
 * the row's ticket while the key counts as seen (no window, or last seen within
 * it), else the keyed id.
 */
export async function lookupSeen(
  db: Db,
  channel: string,
  key: string,
  windowMs: number | null,
  now: number,
  keyedId: string | null,
): Promise<{ seen: boolean; seenId: string | null; ticket: TicketRecord | null }> {
  const r = await first<Partial<TicketRow> & { seen_id: string | null; seen_valid: boolean | null }>(
    db,
    `SELECT d.ticket_id AS seen_id, ($3::bigint IS NULL OR $4::bigint - d.last_seen < $3::bigint) AS seen_valid, ${COLS.split(', ').map((c) => `t.${c}`).join(', ')}
       FROM (SELECT 1) one
       LEFT JOIN dedupe d ON d.channel = $1 AND d.key = $2
       LEFT JOIN tickets t ON t.id = CASE WHEN d.ticket_id IS NOT NULL AND ($3::bigint IS NULL OR $4::bigint - d.last_seen < $3::bigint)
                                          THEN d.ticket_id ELSE $5::text END`,
    [channel, key, windowMs, now, keyedId],
  );
  const seen = r?.seen_id != null;
  const seenId = seen && r!.seen_valid ? r!.seen_id! : keyedId;
  return { seen, seenId, ticket: r?.id ? toRecord(r as TicketRow) : null };
}

export async function touchDedupe(db: Db, channel: string, key: string, now: number): Promise<void> {
  await query(db, `UPDATE dedupe SET last_seen = $3 WHERE channel = $1 AND key = $2`, [channel, key, now]);
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
 * The day's next number, cluster-wide. The counter row stays locked until the
 * unit commits, so numbers are handed out in commit order and a rolled-back
 * unit gives its number back.
 */
export async function nextNumber(db: Db, day: string): Promise<number> {
  const r = await first<{ last: number }>(
    db,
    `INSERT INTO ticket_counters (day, last) VALUES ($1, 1) ON CONFLICT (day) DO UPDATE SET last = ticket_counters.last + 1 RETURNING last`,
    [day],
  );
  return r!.last;
}

export async function recentByCitizen(db: Db, citizenKey: string, since: number): Promise<RecentTicket[]> {
  const rs = await rows<{ id: string; matter: string; repeat_of: string | null }>(
    db,
    `SELECT id, matter, repeat_of FROM tickets WHERE citizen_key = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 10`,
    [citizenKey, since],
  );
  return rs.map((r) => ({ id: r.id, matter: r.matter, repeatOf: r.repeat_of }));
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
  return r ? toRecord(r) : null;
}
