import type { OutboundInsert, OutboundRecord, OutboundResult } from '../types.js';
import { MS, first, query, rows, type Db } from './db.js';
import { toOutboundRecord, type OutboundRow } from '../rows.js';

/**
 * Receipts, replies and notices to citizens. A sender claims due rows with a
 * lease (database clock); whatever ends the attempt (sent, retry, failed) clears
 * the claim, and a dead sender's rows are claimed again once its lease lapses.
 */

const COLS = 'id, ticket_id, channel, kind, text, target, state, attempts, next_at, created_at, sent_at, via, upstream_id, delivery, error';



/** Inserts the rows whose id is new; an existing id is left as it is (ids are idempotency keys). */
export async function insertOutbound(db: Db, list: OutboundInsert[]): Promise<number> {
  if (list.length === 0) return 0;
  const r = await query(
    db,
    `INSERT INTO outbound (id, ticket_id, channel, kind, text, target, next_at, created_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
     ON CONFLICT (id) DO NOTHING`,
    [
      list.map((o) => o.id),
      list.map((o) => o.ticketId),
      list.map((o) => o.channel),
      list.map((o) => o.kind),
      list.map((o) => o.text),
      list.map((o) => JSON.stringify(o.target)),
      list.map((o) => o.nextAt),
      list.map((o) => o.createdAt),
    ],
  );
  return r.rowCount ?? 0;
}

/** Whether `id` exists, and how many replies the ticket holds. */
export async function replyFacts(db: Db, id: string, ticketId: string): Promise<{ exists: boolean; replies: number }> {
  const r = await first<{ exists: boolean; replies: number }>(
    db,
    `SELECT EXISTS (SELECT 1 FROM outbound WHERE id = $1) AS exists,
            (SELECT count(*) FROM outbound WHERE ticket_id = $2 AND kind = 'reply') AS replies`,
    [id, ticketId],
  );
  return { exists: r!.exists, replies: r!.replies };
}

export async function claimOutbound(db: Db, now: number, limit: number, owner: string, leaseMs: number): Promise<OutboundRecord[]> {
  const rs = await rows<OutboundRow>(
    db,
    `UPDATE outbound SET owner = $3, lease_until = clock_timestamp() + $4 ${MS}
      WHERE id IN (SELECT id FROM outbound
                    WHERE state = 'pending' AND next_at <= $1 AND (owner IS NULL OR lease_until < clock_timestamp())
                    ORDER BY next_at, ord LIMIT $2 FOR UPDATE SKIP LOCKED)
      RETURNING ${COLS}, ord`,
    [now, limit, owner, leaseMs],
  );
  return (rs as (OutboundRow & { ord: number })[]).sort((a, b) => a.next_at - b.next_at || a.ord - b.ord).map(toOutboundRecord);
}

/** Extends this sender's claim on rows it is still sending. */
export async function renewOutbound(db: Db, owner: string, ids: string[], leaseMs: number): Promise<void> {
  await query(db, `UPDATE outbound SET lease_until = clock_timestamp() + $3 ${MS} WHERE owner = $1 AND id = ANY($2::text[]) AND state = 'pending'`, [owner, ids, leaseMs]);
}

/** Marks the row sent; its ticket id (null when it has none or the row is unknown). */
export async function markSent(db: Db, id: string, now: number, result: OutboundResult): Promise<{ ticketId: string | null } | null> {
  const r = await first<{ ticket_id: string | null }>(
    db,
    `UPDATE outbound SET state = 'sent', sent_at = $2, via = $3, upstream_id = $4, attempts = attempts + 1, error = NULL, owner = NULL, lease_until = NULL
      WHERE id = $1 RETURNING ticket_id`,
    [id, now, result.via, result.upstreamId],
  );
  return r ? { ticketId: r.ticket_id } : null;
}

export async function markRetry(db: Db, id: string, nextAt: number, error: string): Promise<void> {
  await query(db, `UPDATE outbound SET attempts = attempts + 1, next_at = $2, error = $3, owner = NULL, lease_until = NULL WHERE id = $1`, [id, nextAt, error]);
}

export async function markFailed(db: Db, id: string, error: string): Promise<void> {
  await query(db, `UPDATE outbound SET state = 'failed', attempts = attempts + 1, error = $2, owner = NULL, lease_until = NULL WHERE id = $1`, [id, error]);
}

export async function setDelivery(db: Db, channel: string, upstreamId: string, status: string): Promise<boolean> {
  return ((await query(db, `UPDATE outbound SET delivery = $3 WHERE channel = $1 AND upstream_id = $2`, [channel, upstreamId, status])).rowCount ?? 0) > 0;
}

export async function outboundOfTicket(db: Db, ticketId: string, limit: number, kind: string | null): Promise<OutboundRecord[]> {
  const rs = await rows<OutboundRow>(
    db,
    `SELECT ${COLS} FROM (SELECT ${COLS}, ord FROM outbound WHERE ticket_id = $1 AND ($3::text IS NULL OR kind = $3)
       ORDER BY created_at DESC, ord DESC LIMIT $2) n ORDER BY created_at, ord`,
    [ticketId, limit, kind],
  );
  return rs.map(toOutboundRecord);
}

export async function nextOutboundAfter(db: Db, after: number): Promise<number | null> {
  const r = await first<{ due: number | null }>(db, `SELECT min(next_at) AS due FROM outbound WHERE state = 'pending' AND next_at > $1`, [after]);
  return r?.due ?? null;
}

/** Hands back what `owners` claimed and did not finish (at shutdown), for another sender to take at once. */
export async function releaseClaims(db: Db, owners: string[]): Promise<void> {
  if (owners.length === 0) return;
  await query(db, `UPDATE outbound SET owner = NULL, lease_until = NULL WHERE owner = ANY($1::text[]) AND state = 'pending'`, [owners]);
}
