import type { StoredPart } from '../../channels/types.js';
import { MS, first, query, rows, type Db } from './db.js';

/** Channel state: key/value pairs, parts of messages that arrive in pieces, and named leases. */

export async function kvGet(db: Db, channel: string, key: string): Promise<string | null> {
  return (await first<{ value: string }>(db, `SELECT value FROM kv WHERE channel = $1 AND key = $2`, [channel, key]))?.value ?? null;
}

export async function kvSet(db: Db, channel: string, key: string, value: string): Promise<void> {
  await query(db, `INSERT INTO kv (channel, key, value) VALUES ($1, $2, $3) ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value`, [channel, key, value]);
}

/**
 * Serializes the units touching one group: without it, two instances each
 * adding the last-but-one part would each read only their own uncommitted row
 * and neither would see the message complete.
 */
export async function lockGroup(db: Db, channel: string, group: string): Promise<void> {
  await query(db, `SELECT pg_advisory_xact_lock(hashtextextended($1, 1))`, [`${channel}:${group}`]);
}

export async function putPart(db: Db, channel: string, group: string, index: number, data: Buffer, meta: string, now: number): Promise<void> {
  await query(
    db,
    `INSERT INTO parts (channel, grp, idx, data, meta, received_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel, grp, idx) DO NOTHING`,
    [channel, group, index, data, meta, now],
  );
}

export async function getParts(db: Db, channel: string, group: string): Promise<StoredPart[]> {
  const rs = await rows<{ idx: number; data: Buffer; meta: string; received_at: number }>(
    db,
    `SELECT idx, data, meta, received_at FROM parts WHERE channel = $1 AND grp = $2 ORDER BY idx`,
    [channel, group],
  );
  return rs.map((r) => ({ index: r.idx, data: r.data, meta: r.meta, receivedAt: new Date(r.received_at) }));
}

export async function dropParts(db: Db, channel: string, group: string): Promise<void> {
  await query(db, `DELETE FROM parts WHERE channel = $1 AND grp = $2`, [channel, group]);
}

export async function staleGroups(db: Db, channel: string, before: number, limit: number): Promise<string[]> {
  const rs = await rows<{ grp: string }>(
    db,
    `SELECT grp FROM parts WHERE channel = $1 GROUP BY grp HAVING min(received_at) < $2 ORDER BY min(received_at), grp LIMIT $3`,
    [channel, before, limit],
  );
  return rs.map((r) => r.grp);
}

/** Takes or renews the lease; the database clock decides when a holder's lease lapsed. */
export async function acquireLease(db: Db, name: string, owner: string, ttlMs: number): Promise<boolean> {
  const r = await query(
    db,
    `INSERT INTO leases (name, owner, until) VALUES ($1, $2, clock_timestamp() + $3 ${MS})
     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
      WHERE leases.owner = excluded.owner OR leases.until < clock_timestamp()
     RETURNING owner`,
    [name, owner, ttlMs],
  );
  return (r.rowCount ?? 0) > 0;
}

export async function releaseLease(db: Db, name: string, owner: string): Promise<void> {
  await query(db, `DELETE FROM leases WHERE name = $1 AND owner = $2`, [name, owner]);
}
