-- One record per liquidation event. Its closing trades are ledger rows
-- carrying the same liquidation_id (seq first_seq..last_seq), followed by an
-- INSURANCE row when the fund covered a shortfall.
CREATE SEQUENCE liquidation_ids;

CREATE TABLE liquidations (
  liquidation_id     bigint      PRIMARY KEY,  -- handed out in blocks per engine process
  -- Assigned as the record is inserted: the order GET /liquidations calls
  -- newest first, across engine processes (liquidation ids are not).
  record_seq         bigserial   NOT NULL UNIQUE,
  account_id         bigint      NOT NULL CHECK (account_id > 0),
  reason             text        NOT NULL CHECK (reason IN ('mark_price', 'trade', 'withdrawal')),
  trigger_symbol     text,                     -- the tick that set it off (mark_price)
  trigger_price      numeric,
  equity             numeric     NOT NULL,     -- equity at the marks, before closing
  maintenance_margin numeric     NOT NULL,
  realised_pnl       numeric     NOT NULL,     -- sum over the closing trades
  shortfall          numeric     NOT NULL CHECK (shortfall >= 0),
  positions          jsonb       NOT NULL,     -- [{symbol, quantity (signed), entry_price, mark_price}]
  first_seq          bigint      NOT NULL,
  last_seq           bigint      NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (account_id, first_seq)
);

CREATE INDEX liquidations_account ON liquidations (account_id, record_seq DESC);
CREATE INDEX ledger_liquidation ON ledger (liquidation_id) WHERE liquidation_id IS NOT NULL;
