-- Relays take the rows nobody holds, oldest first. Found by walking the primary key,
-- each take stepped over every row already taken and awaiting its confirm (up to
-- PUBLISH_WINDOW per instance) and over deleted rows not yet vacuumed, so a take cost
-- more the busier the relays were. This index holds only the rows waiting. Rows whose
-- lease lapsed are looked for separately, at most once a second (outbox.ts).
CREATE INDEX IF NOT EXISTS outbox_untaken ON outbox (seq) WHERE owner IS NULL;
