-- The event stream (GET /events) reads the tables that already hold every
-- event: trades in the ledger, liquidations, and each market's history
-- (marks, listings, parameter changes). Each row gets the id of the
-- transaction that wrote it, and a reader delivers only rows of transactions
-- older than every transaction still running (pg_snapshot_xmin), in
-- (transaction, table, row) order: a row can never commit behind one already
-- delivered, so resuming after an event id loses nothing.
ALTER TABLE ledger ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE liquidations ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE market_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX ledger_trade_xid ON ledger (xid, entry_id) WHERE kind = 'TRADE';
CREATE INDEX liquidations_xid ON liquidations (xid, liquidation_id);
CREATE INDEX market_events_xid ON market_events (xid, event_id);
