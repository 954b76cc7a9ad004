import type { NewTicket, UnitWrites } from '../types.js';
import { MS } from './db.js';
import { OUTBOX_CHANNEL } from './outbox.js';

/**
 * Everything a unit writes at its end, in one statement (one round trip): the
 * new ticket, its dedupe row, outbox rows with the NOTIFY that wakes the other
 * instances' relays (delivered at commit) when the writer asks for it, outgoing
 * messages, refs, and the parts group the message consumed. Each statement is a
 * round trip, and while a unit runs it holds its locks and a pooled connection,
 * so a unit's writes are this one statement, sent together with the unit's COMMIT
 * (see PostgresStore.finish).
 */

export interface UnitEnd {
  ticket?: { t: NewTicket; channel: string; raw: Buffer };
  dedupe?: { channel: string; key: string; ticketId: string };
  parts?: { channel: string; group: string };
  writes: UnitWrites;
  now: number;
  /**
   * NOTIFY payload: the writer's instance id and the number of outbox rows; null
   * sends none (the writer's own relay is taking its rows, and each commit that
   * sends a NOTIFY queues on a database-wide lock until it is flushed).
   */
  writer: string | null;
  /**
   * The outbox rows are written already taken by this instance for `leaseMs`
   * (its relay publishes them from memory, see PostgresStore.handed); null writes
   * them untaken, for whichever relay takes them first.
   */
  takenBy: { owner: string; leaseMs: number } | null;
  /** Each outbox row's body, serialized (outboxBody), in the order of `writes.outbox`. */
  outboxBodies: string[];
}

const WRITE = `
WITH
t AS (
  INSERT INTO tickets (id, number, channel, citizen_key, created_at, respond_by, acknowledged_at, matter, repeat_of, body, raw, due_at, due_kind)
  SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint, $8::text, $9::text, $10::text, $11::bytea, $12::bigint, $13::text
   WHERE $1::text IS NOT NULL
),
d AS (
  INSERT INTO dedupe (channel, key, ticket_id, first_seen, last_seen)
  SELECT $14::text, $15::text, $16::text, $17::bigint, $17::bigint WHERE $16::text IS NOT NULL
  ON CONFLICT (channel, key) DO UPDATE SET ticket_id = excluded.ticket_id, first_seen = excluded.first_seen, last_seen = excluded.last_seen
),
o AS (
  INSERT INTO outbox (routing_key, message_id, type, headers, body, created_at, ticket_ref, owner, lease_until)
  SELECT r, m, y, h, b, $17::bigint, tr, $37::text, CASE WHEN $37::text IS NOT NULL THEN clock_timestamp() + $38::bigint ${MS} END
    FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[]) AS u(r, m, y, h, b, tr)
  RETURNING seq, message_id
),
b AS (
  INSERT INTO outbound (id, ticket_id, channel, kind, text, target, next_at, created_at)
  SELECT * FROM unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::bigint[], $31::bigint[])
  ON CONFLICT (id) DO NOTHING
),
f AS (
  INSERT INTO refs (ref, ticket_id) SELECT * FROM unnest($32::text[], $33::text[]) ON CONFLICT (ref) DO NOTHING
),
p AS (
  DELETE FROM parts WHERE channel = $34::text AND grp = $35::text
),
n AS (
  SELECT pg_notify('${OUTBOX_CHANNEL}', $36::text || ' ' || c.n) FROM (SELECT count(*) AS n FROM o) c WHERE c.n > 0 AND $36::text IS NOT NULL
)
SELECT (SELECT array_agg(seq) FROM o) AS seqs, (SELECT array_agg(message_id) FROM o) AS ids, (SELECT count(*) FROM n) AS notified`;

/** The statement that writes everything in `e`, or null when there is nothing to write. */
export function unitWrite(e: UnitEnd): { text: string; values: unknown[] } | null {
  const outbox = e.writes.outbox ?? [];
  const outbound = e.writes.outbound ?? [];
  const refs = e.writes.refs ?? [];
  if (!e.ticket && !e.dedupe && !e.parts && outbox.length === 0 && outbound.length === 0 && refs.length === 0) return null;
  const t = e.ticket?.t;
  const values = [
    t?.id ?? null,
    t?.number ?? null,
    e.ticket?.channel ?? null,
    t?.citizenKey ?? null,
    t?.createdAt ?? null,
    t?.respondBy ?? null,
    t?.acknowledgedAt ?? null,
    t?.matter ?? null,
    t?.repeatOf ?? null,
    t?.json ?? null,
    e.ticket?.raw ?? null,
    t?.due.at ?? null,
    t?.due.kind ?? null,
    e.dedupe?.channel ?? null,
    e.dedupe?.key ?? null,
    e.dedupe?.ticketId ?? null,
    e.now,
    outbox.map((m) => m.routingKey),
    outbox.map((m) => m.messageId),
    outbox.map((m) => m.type),
    outbox.map((m) => JSON.stringify(m.headers)),
    // A row pointing at its ticket keeps no second copy of the body.
    outbox.map((m, i) => (m.ticketRef ? '' : e.outboxBodies[i]!)),
    outbox.map((m) => m.ticketRef ?? null),
    outbound.map((o) => o.id),
    outbound.map((o) => o.ticketId),
    outbound.map((o) => o.channel),
    outbound.map((o) => o.kind),
    outbound.map((o) => o.text),
    outbound.map((o) => JSON.stringify(o.target)),
    outbound.map((o) => o.nextAt),
    outbound.map((o) => o.createdAt),
    refs.map((r) => r.ref),
    refs.map((r) => r.ticketId),
    e.parts?.channel ?? null,
    e.parts?.group ?? null,
    e.writer,
    e.takenBy?.owner ?? null,
    e.takenBy?.leaseMs ?? null,
  ];
  return { text: WRITE, values };
}
