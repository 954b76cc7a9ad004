-- The operations page counts today's breaches every second while it is open; breached
-- tickets are few, so this partial index is small and the count never scans all tickets.
CREATE INDEX IF NOT EXISTS tickets_breached ON tickets (respond_by) WHERE breached;
