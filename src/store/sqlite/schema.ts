import type Database from 'better-sqlite3';

/**
 * The SQLite layout. `SCHEMA` creates what a new file needs; `migrate` brings a
 * file written by an earlier release to the current layout (idempotent: nothing to
 * do on a new file).
 */

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS tickets (
  id TEXT PRIMARY KEY,
  number TEXT NOT NULL UNIQUE,
  channel TEXT NOT NULL,
  citizen_key TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  respond_by INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'open',
  acknowledged_at INTEGER,
  responded_at INTEGER,
  breached INTEGER NOT NULL DEFAULT 0,
  matter TEXT NOT NULL,
  repeat_of TEXT,
  body TEXT NOT NULL,
  raw BLOB NOT NULL,
  due_at INTEGER,
  due_kind TEXT
);
CREATE INDEX IF NOT EXISTS tickets_citizen ON tickets(citizen_key, created_at);
CREATE TABLE IF NOT EXISTS dedupe (
  channel TEXT NOT NULL, key TEXT NOT NULL, ticket_id TEXT NOT NULL,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  PRIMARY KEY (channel, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (ref TEXT PRIMARY KEY, ticket_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  routing_key TEXT NOT NULL, message_id TEXT NOT NULL, type TEXT NOT NULL,
  headers TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
  ticket_ref TEXT
);
CREATE TABLE IF NOT EXISTS outbound (
  id TEXT PRIMARY KEY, ticket_id TEXT, channel TEXT NOT NULL, kind TEXT NOT NULL,
  text TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
  sent_at INTEGER, via TEXT, upstream_id TEXT, delivery TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS outbound_due ON outbound(state, next_at);
CREATE INDEX IF NOT EXISTS outbound_ticket ON outbound(ticket_id);
CREATE INDEX IF NOT EXISTS outbound_upstream ON outbound(channel, upstream_id);
CREATE TABLE IF NOT EXISTS kv (channel TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (channel, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
  channel TEXT NOT NULL, grp TEXT NOT NULL, idx INTEGER NOT NULL,
  data BLOB NOT NULL, meta TEXT NOT NULL, received_at INTEGER NOT NULL,
  PRIMARY KEY (channel, grp, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_age ON parts(received_at);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;
`;

/**
 * Columns added after the first release, with the statement that adds them to an
 * older file. Deadlines used to be rows of their own (two per ticket, keyed by a
 * random id); they now live on the ticket, so accepting a ticket writes one
 * time-ordered index entry instead of four scattered ones.
 */
const ADDED_COLUMNS: [table: string, column: string, ddl: string][] = [
  ['tickets', 'due_at', 'ALTER TABLE tickets ADD COLUMN due_at INTEGER'],
  ['tickets', 'due_kind', 'ALTER TABLE tickets ADD COLUMN due_kind TEXT'],
  ['outbox', 'ticket_ref', 'ALTER TABLE outbox ADD COLUMN ticket_ref TEXT'],
];
export const INDEXES_AFTER_MIGRATION = `CREATE INDEX IF NOT EXISTS tickets_due ON tickets(due_at) WHERE due_at IS NOT NULL;`;


export function migrate(db: Database.Database): void {
  db.transaction(() => {
    for (const [table, column, ddl] of ADDED_COLUMNS) {
      const cols = db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[];
      if (!cols.includes(column)) db.exec(ddl);
    }
    const old = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'deadlines'`).get();
    if (old) {
      // Each ticket's earliest open deadline row becomes its next due time; a
      // pending warning is followed by the breach at respond_by as before.
      db.exec(`UPDATE tickets SET (due_at, due_kind) = (
                 SELECT d.due_at, d.kind FROM deadlines d WHERE d.ticket_id = tickets.id ORDER BY d.due_at LIMIT 1)
               WHERE id IN (SELECT ticket_id FROM deadlines)`);
      db.exec(`DROP TABLE deadlines`);
    }
    db.exec(INDEXES_AFTER_MIGRATION);
    // Reply rows were keyed `reply:<replyId>`, one replyId for all tickets; a replyId is now
    // unique within its ticket only, keyed `reply:<ticketId>:<replyId>` (outboundId.reply in
    // lifecycle.ts). Old rows move to the new key, so re-posting an old replyId on its ticket
    // is still a duplicate and the status still names it. Rows already moved are skipped.
    db.exec(`UPDATE outbound SET id = 'reply:' || ticket_id || ':' || substr(id, 7)
             WHERE kind = 'reply' AND ticket_id IS NOT NULL AND substr(id, 1, 6) = 'reply:'
               AND substr(id, 7, length(ticket_id) + 1) <> ticket_id || ':'`);
  })();
}
