-- Margin calls: an account whose margin status got worse (healthy →
-- margin_call, healthy → liquidatable, margin_call → liquidatable), one row
-- per transition, read by the event stream as its fourth table (after the
-- ledger's trades, liquidations and market events, in (xid, table, row)
-- order; see sql/005_events.sql).
--
-- A trade's or a funding payment's margin call commits in the same
-- transaction as the ledger row that caused it; a tick's commits in a
-- transaction of its own after the mark's, before the tick's liquidations.
CREATE TABLE margin_calls (
  margin_call_id     bigserial   PRIMARY KEY,
  account_id         bigint      NOT NULL,
  status             text        NOT NULL CHECK (status IN ('margin_call', 'liquidatable')),
  previous_status    text        NOT NULL CHECK (previous_status IN ('healthy', 'margin_call')),
  equity             numeric     NOT NULL,
  initial_margin     numeric     NOT NULL,
  maintenance_margin numeric     NOT NULL,
  -- each symbol the account holds → its mark at the evaluation (null: no mark yet, valued at entry)
  marks              jsonb       NOT NULL,
  cause              text        NOT NULL CHECK (cause IN ('tick', 'trade', 'funding')),
  -- the tick's, the trade's or the funding event's symbol
  symbol             text        NOT NULL,
  -- tick: the mark's version (a sweep run again finds the same transitions and writes none twice)
  mark_version       bigint,
  -- funding: the event
  funding_id         text,
  -- trade, funding: the ledger row that caused it
  seq                bigint,
  created_at         timestamptz NOT NULL DEFAULT now(),
  xid                xid8        NOT NULL DEFAULT pg_current_xact_id(),
  CHECK ((cause = 'tick') = (mark_version IS NOT NULL)),
  CHECK ((cause = 'funding') = (funding_id IS NOT NULL))
);

CREATE UNIQUE INDEX margin_calls_tick_once ON margin_calls (symbol, mark_version, account_id) WHERE cause = 'tick';
CREATE INDEX margin_calls_xid ON margin_calls (xid, margin_call_id);
