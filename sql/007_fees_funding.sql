-- Trading fees and funding payments.
--
-- A trade row carries the fee it paid (`fee`, negative for a maker rebate;
-- already taken off `balance`) and which side of the book it was on
-- (`liquidity`). Rows written before this migration have both null: no fee
-- was charged then.
ALTER TABLE ledger ADD COLUMN fee numeric;
ALTER TABLE ledger ADD COLUMN liquidity text CHECK (liquidity IN ('maker', 'taker'));

-- FUNDING: one row per holder per funding event. `amount` is signed, the
-- change to the balance: negative when the account paid, positive when it
-- received (0 at a zero rate); `symbol` the market, `price` the mark it was
-- charged at, `position_quantity` the signed position charged, `funding_id`
-- the event. Every other kind keeps amount > 0.
ALTER TABLE ledger ADD COLUMN funding_id text;
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
  CHECK (kind IN ('TRADE', 'DEPOSIT', 'WITHDRAWAL', 'INSURANCE', 'LIQUIDATION_FEE', 'FUNDING'));
ALTER TABLE ledger DROP CONSTRAINT ledger_amount_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_amount_check CHECK (amount > 0 OR kind = 'FUNDING');
ALTER TABLE ledger ADD CONSTRAINT ledger_funding_check
  CHECK ((kind = 'FUNDING') = (funding_id IS NOT NULL) AND (kind <> 'FUNDING' OR symbol IS NOT NULL));

-- A holder is charged at most once per funding event, whatever crashes and
-- re-runs happen: a re-run's row for an account already charged is refused
-- here. Led by funding_id, so the event's rows (its totals, who is already
-- charged) are read from the same index.
CREATE UNIQUE INDEX ledger_funding_once ON ledger (funding_id, account_id) WHERE kind = 'FUNDING';

-- One row per funding event: recovery finishes a 'running' one at its
-- recorded mark; a repeated request answers from a 'done' one.
CREATE TABLE fundings (
  funding_id  text        PRIMARY KEY,  -- unique across markets
  symbol      text        NOT NULL,
  rate        numeric     NOT NULL CHECK (rate > -1 AND rate < 1),
  mark_price  numeric     NOT NULL CHECK (mark_price > 0),
  status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
  accounts    bigint,                   -- done: holders charged (one FUNDING row each)
  paid        numeric,                  -- done: total paid by payers (>= 0)
  received    numeric,                  -- done: total received by receivers (>= 0)
  liquidated  bigint[],                 -- done: accounts the funding put under maintenance, liquidated
  actor       text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- touched while a run progresses: a running event not touched for a while has lost its process
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX fundings_running ON fundings (updated_at) WHERE status = 'running';

-- A liquidation set off by a funding payment.
ALTER TABLE liquidations DROP CONSTRAINT liquidations_reason_check;
ALTER TABLE liquidations ADD CONSTRAINT liquidations_reason_check
  CHECK (reason IN ('mark_price', 'trade', 'withdrawal', 'funding', 'market'));
