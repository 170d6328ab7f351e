-- The ledger: every change to an account's balance or positions, one row each,
-- totally ordered per account by `seq`. The primary key (account_id, seq) is the
-- engine's fence: two writers that computed from the same account state cannot
-- both commit, whatever happened to the Redis lock between them.
--
-- Each row carries the account's state *after* it (balance, and for trades the
-- symbol's position), so Redis can be rebuilt from the last rows alone and a
-- reader can audit any row without replaying history.
CREATE TABLE ledger (
  entry_id            bigserial   NOT NULL UNIQUE,
  account_id          bigint      NOT NULL CHECK (account_id > 0),
  seq                 bigint      NOT NULL CHECK (seq > 0),
  -- INSURANCE: the insurance fund covering a liquidation's shortfall (amount = the deficit)
  kind                text        NOT NULL CHECK (kind IN ('TRADE', 'DEPOSIT', 'WITHDRAWAL', 'INSURANCE')),
  -- trades
  symbol              text,
  side                text        CHECK (side IN ('BUY', 'SELL')),
  quantity            numeric     CHECK (quantity > 0),
  price               numeric     CHECK (price > 0),
  realised_pnl        numeric,
  client_order_id     text,
  liquidation_id      bigint,
  position_quantity   numeric,    -- the symbol's signed quantity after the trade (0 = flat)
  position_entry_price numeric,   -- its average entry after the trade (null when flat)
  equity              numeric,    -- account equity right after the trade, at the marks it was checked at
  -- cash movements
  amount              numeric     CHECK (amount > 0),
  -- every row
  balance             numeric     NOT NULL,  -- balance after this row
  created_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, seq),
  CHECK ((kind = 'TRADE') = (symbol IS NOT NULL AND side IS NOT NULL AND quantity IS NOT NULL
                             AND price IS NOT NULL AND realised_pnl IS NOT NULL AND position_quantity IS NOT NULL)),
  CHECK ((kind = 'TRADE') = (amount IS NULL))
);

-- Idempotency survives Redis: a client order id books at most once per account.
CREATE UNIQUE INDEX ledger_client_order_id ON ledger (account_id, client_order_id)
  WHERE client_order_id IS NOT NULL;

-- Rebuilding positions: the newest trade row per (account, symbol).
CREATE INDEX ledger_position ON ledger (account_id, symbol, seq DESC) WHERE kind = 'TRADE';

-- The two readable histories the product speaks of.
CREATE VIEW trades AS
  SELECT entry_id AS trade_id, account_id, seq, symbol, side, quantity, price, realised_pnl,
         liquidation_id, client_order_id, position_quantity, position_entry_price, equity, balance, created_at
  FROM ledger WHERE kind = 'TRADE';

CREATE VIEW cash_movements AS
  SELECT entry_id AS movement_id, account_id, seq, kind, amount, balance, created_at
  FROM ledger WHERE kind IN ('DEPOSIT', 'WITHDRAWAL');

-- The operator's latest mark per symbol; the marks a liquidation closed at are kept in its record.
CREATE TABLE mark_prices (
  symbol     text        PRIMARY KEY,
  price      numeric     NOT NULL CHECK (price > 0),
  version    bigint      NOT NULL DEFAULT 1,  -- orders concurrent posts, so Redis keeps the newest
  updated_at timestamptz NOT NULL DEFAULT now()
);
