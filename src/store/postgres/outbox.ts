import type { OutboxMessage, OutboxSummary } from '../types.js';
import { MS, first, query, rows, type Db } from './db.js';
import { toOutboxMessage, type OutboxRow } from '../rows.js';

/**
 * The outbox shared by every instance's relay. A relay takes rows by writing its
 * instance id and a lease (database clock) on them; it renews the lease while it
 * holds them, deletes them when the broker confirmed, and clears them to hand
 * them back. Rows of an instance that died are free again once its lease lapses.
 */

export const OUTBOX_CHANNEL = 'gateway_outbox';

export const AUTOVACUUM_OFF =
  'PostgreSQL autovacuum is off: outbox rows are inserted, taken and deleted within seconds, and without vacuum their dead versions pile up (measured: 300,000 after three minutes at 400 tickets/s) and slow every statement that reads the outbox. Turn autovacuum on, or VACUUM the outbox table often.';

/** True when the server does not vacuum by itself (`autovacuum = off`). */
export async function autovacuumOff(db: Db): Promise<boolean> {
  return (await first<{ autovacuum: string }>(db, 'SHOW autovacuum'))?.autovacuum === 'off';
}

/**
 * Takes up to `limit` rows no live relay holds, oldest first, for `leaseMs`: rows nobody
 * took (the partial index outbox_untaken), and with `lapsed` also rows whose holder's
 * lease ran out (an instance that died), which means looking at every held row.
 */
export async function takeOutbox(db: Db, owner: string, leaseMs: number, limit: number, lapsed: boolean): Promise<OutboxMessage[]> {
  const rs = await rows<OutboxRow>(
    db,
    `WITH fresh AS (
       SELECT seq FROM outbox WHERE owner IS NULL ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED),
     orphaned AS (
       SELECT seq FROM outbox WHERE $4::boolean AND owner IS NOT NULL AND lease_until < clock_timestamp()
        ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED),
     taken AS (
       UPDATE outbox SET owner = $1, lease_until = clock_timestamp() + $2 ${MS}
        WHERE seq IN (SELECT seq FROM (SELECT seq FROM fresh UNION ALL SELECT seq FROM orphaned) c ORDER BY seq LIMIT $3)
       RETURNING seq, routing_key, message_id, type, headers, body, created_at, ticket_ref)
     SELECT k.seq, k.routing_key, k.message_id, k.type, k.headers, k.body, k.created_at, t.body AS ticket_body
       FROM taken k LEFT JOIN tickets t ON k.ticket_ref IS NOT NULL AND t.id = k.ticket_ref
      ORDER BY k.seq`,
    [owner, leaseMs, limit, lapsed],
  );
  return rs.map(toOutboxMessage);
}

/** Confirmed rows leave, whoever holds them now: a second publish is what a consumer dedupes anyway. */
export async function deleteOutbox(db: Db, seqs: number[]): Promise<number> {
  if (seqs.length === 0) return 0;
  return (await query(db, `DELETE FROM outbox WHERE seq = ANY($1::bigint[])`, [seqs])).rowCount ?? 0;
}

/** Hands back the rows `owner` holds: those of `seqs`, or all. */
export async function releaseOutbox(db: Db, owner: string, seqs?: number[]): Promise<void> {
  if (seqs) await query(db, `UPDATE outbox SET owner = NULL, lease_until = NULL WHERE owner = $1 AND seq = ANY($2::bigint[])`, [owner, seqs]);
  else await query(db, `UPDATE outbox SET owner = NULL, lease_until = NULL WHERE owner = $1`, [owner]);
}

/**
 * Extends the lease on the rows of `seqs` that `owner` still holds; how many those are.
 * Only rows its relay is publishing: a row it took and dropped lapses and is taken again.
 */
export async function renewOutbox(db: Db, owner: string, leaseMs: number, seqs: number[]): Promise<number> {
  return (await query(db, `UPDATE outbox SET lease_until = clock_timestamp() + $2 ${MS} WHERE owner = $1 AND seq = ANY($3::bigint[])`, [owner, leaseMs, seqs])).rowCount ?? 0;
}

/** The outbox depth and how many rows no live relay holds, in one scan. */
export async function outboxStats(db: Db): Promise<{ depth: number; untaken: number }> {
  const r = await first<{ depth: number; untaken: number }>(
    db,
    `SELECT count(*) AS depth, count(*) FILTER (WHERE owner IS NULL OR lease_until < clock_timestamp()) AS untaken FROM outbox`,
  );
  return { depth: r?.depth ?? 0, untaken: r?.untaken ?? 0 };
}

/** Whether a take would find rows: untaken ones first (the partial index), held ones with a lapsed lease only when there are none. */
export async function hasUntaken(db: Db): Promise<boolean> {
  const r = await first<{ any: boolean }>(
    db,
    `SELECT EXISTS (SELECT 1 FROM outbox WHERE owner IS NULL)
         OR EXISTS (SELECT 1 FROM outbox WHERE owner IS NOT NULL AND lease_until < clock_timestamp()) AS any`,
  );
  return r?.any ?? false;
}

/** createdAt of the oldest row not yet confirmed (seq order is insertion order), or null. */
export async function oldestOutbox(db: Db): Promise<number | null> {
  const r = await first<{ at: number }>(db, `SELECT created_at AS at FROM outbox ORDER BY seq LIMIT 1`);
  return r ? Number(r.at) : null;
}

/** Depth, the oldest row, and how many rows live and lapsed leases hold, in one scan. */
export async function outboxSummary(db: Db): Promise<OutboxSummary> {
  const r = await first<{ depth: number; taken: number; lapsed: number; oldest_at: number | null; oldest_key: string | null }>(
    db,
    `SELECT count(*) AS depth,
            count(*) FILTER (WHERE owner IS NOT NULL AND lease_until >= clock_timestamp()) AS taken,
            count(*) FILTER (WHERE owner IS NOT NULL AND lease_until < clock_timestamp()) AS lapsed,
            (SELECT created_at FROM outbox ORDER BY seq LIMIT 1) AS oldest_at,
            (SELECT routing_key FROM outbox ORDER BY seq LIMIT 1) AS oldest_key
       FROM outbox`,
  );
  return { depth: r?.depth ?? 0, taken: r?.taken ?? 0, lapsed: r?.lapsed ?? 0, oldestAt: r?.oldest_at ?? null, oldestRoutingKey: r?.oldest_key ?? null };
}
