-- The shared store of a gateway cluster. Times the gateway reasons about
-- (tickets, deadlines, outgoing messages, parts) are epoch milliseconds from the
-- instances' injected clock, as in the embedded store; leases and claims are
-- timestamptz compared with the database clock, so instances whose clocks are
-- skewed still agree on who holds what.

CREATE TABLE tickets (
  id text PRIMARY KEY,
  number text NOT NULL UNIQUE,
  channel text NOT NULL,
  citizen_key text NOT NULL,
  created_at bigint NOT NULL,
  respond_by bigint NOT NULL,
  acknowledged_at bigint,
  responded_at bigint,
  breached boolean NOT NULL DEFAULT false,
  matter text NOT NULL,
  repeat_of text,
  -- The JSON exactly as intake serialized it: published bodies must be byte-identical,
  -- which jsonb (key order, whitespace) would not keep.
  body text NOT NULL,
  raw bytea NOT NULL,
  -- The ticket's next deadline event; null once the last fired or a reply cancelled them.
  due_at bigint,
  due_kind text CHECK (due_kind IN ('warning', 'breach'))
);
CREATE INDEX tickets_citizen ON tickets (citizen_key, created_at);
CREATE INDEX tickets_due ON tickets (due_at) WHERE due_at IS NOT NULL;

-- The last number handed out per local day, cluster-wide.
CREATE TABLE ticket_counters (
  day text PRIMARY KEY,
  last integer NOT NULL
);

CREATE TABLE dedupe (
  channel text NOT NULL,
  key text NOT NULL,
  ticket_id text NOT NULL,
  first_seen bigint NOT NULL,
  last_seen bigint NOT NULL,
  PRIMARY KEY (channel, key)
);

CREATE TABLE refs (
  ref text PRIMARY KEY,
  ticket_id text NOT NULL
);

CREATE TABLE outbox (
  seq bigserial PRIMARY KEY,
  routing_key text NOT NULL,
  message_id text NOT NULL,
  type text NOT NULL,
  headers text NOT NULL,
  -- '' when ticket_ref names the ticket whose body this is.
  body text NOT NULL,
  created_at bigint NOT NULL,
  ticket_ref text,
  -- The instance whose relay took the row, until lease_until (database clock).
  owner text,
  lease_until timestamptz
);
CREATE INDEX outbox_owner ON outbox (owner) WHERE owner IS NOT NULL;

CREATE TABLE outbound (
  id text PRIMARY KEY,
  -- Insertion order, for "oldest first" among rows created in the same millisecond.
  ord bigserial NOT NULL,
  ticket_id text,
  channel text NOT NULL,
  kind text NOT NULL,
  text text NOT NULL,
  target text NOT NULL,
  state text NOT NULL DEFAULT 'pending',
  attempts integer NOT NULL DEFAULT 0,
  next_at bigint NOT NULL,
  created_at bigint NOT NULL,
  sent_at bigint,
  via text,
  upstream_id text,
  delivery text,
  error text,
  owner text,
  lease_until timestamptz
);
CREATE INDEX outbound_due ON outbound (next_at) WHERE state = 'pending';
CREATE INDEX outbound_ticket ON outbound (ticket_id, ord);
CREATE INDEX outbound_upstream ON outbound (channel, upstream_id) WHERE upstream_id IS NOT NULL;

CREATE TABLE kv (
  channel text NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (channel, key)
);

CREATE TABLE parts (
  channel text NOT NULL,
  grp text NOT NULL,
  idx integer NOT NULL,
  data bytea NOT NULL,
  meta text NOT NULL,
  received_at bigint NOT NULL,
  PRIMARY KEY (channel, grp, idx)
);
CREATE INDEX parts_age ON parts (channel, received_at);

CREATE TABLE leases (
  name text PRIMARY KEY,
  owner text NOT NULL,
  until timestamptz NOT NULL
);

CREATE TABLE attachments (
  sha256 text PRIMARY KEY,
  data bytea NOT NULL,
  size integer NOT NULL,
  created_at bigint NOT NULL
);
