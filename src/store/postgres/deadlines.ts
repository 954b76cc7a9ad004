import type { DeadlineKind, DueDeadline, FiredDeadline } from '../types.js';
import { first, query, rows, type Db } from './db.js';
import { toRecord, type TicketRow } from './tickets.js';
import type { TicketRecord } from '../types.js';

/**
 * Deadline events live on their ticket (due_at, due_kind): the warning, then the
 * breach at respond_by. Due rows are claimed with FOR UPDATE SKIP LOCKED, so two
 * instances firing at once split them and each event fires once.
 */

const COLS = 'id, number, channel, citizen_key, created_at, respond_by, acknowledged_at, responded_at, breached, repeat_of, body, due_at, due_kind';

export async function claimDue(db: Db, now: number, limit: number): Promise<{ due: DueDeadline; record: TicketRecord }[]> {
  const rs = await rows<TicketRow & { due_at: number; due_kind: DeadlineKind }>(
    db,
    `SELECT ${COLS} FROM tickets WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
  return rs.map((r) => ({ due: { ticketId: r.id, kind: r.due_kind, dueAt: r.due_at, respondBy: r.respond_by }, record: toRecord(r) }));
}

/** Moves each fired ticket on to its next event (or none) and applies the lifecycle fields, in one statement. */
export async function applyFired(db: Db, fired: { ticketId: string; f: FiredDeadline }[]): Promise<void> {
  if (fired.length === 0) return;
  await query(
    db,
    `UPDATE tickets t SET due_at = u.due_at, due_kind = u.due_kind,
                          breached = t.breached OR u.breached,
                          acknowledged_at = COALESCE(u.ack, t.acknowledged_at),
                          responded_at = COALESCE(u.resp, t.responded_at)
       FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[], $5::bigint[], $6::bigint[]) AS u(id, due_at, due_kind, breached, ack, resp)
      WHERE t.id = u.id`,
    [
      fired.map((x) => x.ticketId),
      fired.map((x) => (x.f.clearDue ? null : (x.f.next?.at ?? null))),
      fired.map((x) => (x.f.clearDue ? null : (x.f.next?.kind ?? null))),
      fired.map((x) => x.f.breached === true),
      fired.map((x) => x.f.acknowledgedAt ?? null),
      fired.map((x) => x.f.respondedAt ?? null),
    ],
  );
}

export async function nextDeadline(db: Db): Promise<number | null> {
  return (await first<{ due: number | null }>(db, `SELECT min(due_at) AS due FROM tickets WHERE due_at IS NOT NULL`))?.due ?? null;
}

export async function openDeadlines(db: Db): Promise<number> {
  return (await first<{ n: number }>(db, `SELECT count(*) AS n FROM tickets WHERE due_at IS NOT NULL`))?.n ?? 0;
}
