-- Venue-grade risk: liquidation fees, partial liquidations and the
-- insurance fund.
--
-- A liquidation's fee is a LIQUIDATION_FEE row on the account (amount = the
-- fee, after the closing trades). The fund lives here only: it changes on
-- liquidations and treasury deposits, never on the trade path.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
  CHECK (kind IN ('TRADE', 'DEPOSIT', 'WITHDRAWAL', 'INSURANCE', 'LIQUIDATION_FEE', 'FUNDING'));

ALTER TABLE liquidations DROP CONSTRAINT liquidations_reason_check;
ALTER TABLE liquidations ADD CONSTRAINT liquidations_reason_check
  CHECK (reason IN ('mark_price', 'trade', 'withdrawal', 'funding', 'market'));

-- mode: 'partial' when positions were left open. positions: the parts closed
-- (signed quantity). positions_left: [{symbol, quantity, entry_price}].
-- A record with a fee or a shortfall is settled against the fund after it
-- commits (settle_insurance below): fund_paid and bad_debt are known from then.
ALTER TABLE liquidations
  ADD COLUMN mode text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'partial')),
  ADD COLUMN fee numeric NOT NULL DEFAULT 0 CHECK (fee >= 0),
  ADD COLUMN positions_left jsonb NOT NULL DEFAULT '[]',
  ADD COLUMN settled boolean NOT NULL DEFAULT true,
  ADD COLUMN fund_paid numeric,
  ADD COLUMN bad_debt numeric;

-- Liquidations recorded before the fund existed: nobody paid their shortfall.
UPDATE liquidations SET fund_paid = 0, bad_debt = shortfall;

CREATE INDEX liquidations_unsettled ON liquidations (account_id, liquidation_id) WHERE NOT settled;

CREATE TABLE insurance_fund (
  id               integer     PRIMARY KEY CHECK (id = 1),
  balance          numeric     NOT NULL CHECK (balance >= 0),
  fees_received    numeric     NOT NULL,
  deposits         numeric     NOT NULL,
  shortfalls_paid  numeric     NOT NULL,
  bad_debt         numeric     NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO insurance_fund (id, balance, fees_received, deposits, shortfalls_paid, bad_debt)
  SELECT 1, 0, 0, 0, 0, COALESCE(sum(shortfall), 0) FROM liquidations;

-- Every movement of the fund, with its balance after.
--   fee:       a liquidation's fee came in (amount = the fee)
--   deposit:   the treasury paid in
--   shortfall: a liquidation's shortfall was paid out (amount = what the fund
--              paid; bad_debt = the rest, beyond the fund's balance)
CREATE TABLE insurance_fund_history (
  movement_id     bigserial   PRIMARY KEY,
  kind            text        NOT NULL CHECK (kind IN ('fee', 'deposit', 'shortfall')),
  amount          numeric     NOT NULL CHECK (amount >= 0),
  balance         numeric     NOT NULL CHECK (balance >= 0),
  liquidation_id  bigint,
  account_id      bigint,
  shortfall       numeric,
  bad_debt        numeric,
  actor           text,
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Settles every unsettled liquidation against the fund, under the fund
-- row's lock: first their fees come in, then their shortfalls draw on it in
-- ascending account id (so the liquidations of one tick draw in that order);
-- a shortfall beyond the balance empties it and the rest is bad debt.
-- Set-based (one statement per step, whatever the number of liquidations):
-- with F the balance after the fees and S_i the shortfalls before the i-th,
-- the i-th pays least(s_i, greatest(F − S_i, 0)) and leaves
-- greatest(F − S_i − s_i, 0).
-- Only settlers change these rows, and the fund row's lock keeps them one at
-- a time, so the liquidations need no lock of their own.
-- Returns how many liquidations it settled, and the bad debt they added.
CREATE OR REPLACE FUNCTION settle_insurance(OUT settled integer, OUT bad_debt numeric)
LANGUAGE plpgsql AS $$
DECLARE
  f insurance_fund%ROWTYPE;
  fees numeric;
  after_fees numeric;
  paid_total numeric;
BEGIN
  SELECT * INTO f FROM insurance_fund WHERE id = 1 FOR UPDATE;
  CREATE TEMP TABLE IF NOT EXISTS settling (liquidation_id bigint, account_id bigint, fee numeric, shortfall numeric, actor text, rank bigint) ON COMMIT DROP;
  TRUNCATE settling;
  INSERT INTO settling
    SELECT l.liquidation_id, l.account_id, l.fee, l.shortfall, l.actor, row_number() OVER (ORDER BY l.account_id, l.liquidation_id)
    FROM liquidations l WHERE NOT l.settled;
  GET DIAGNOSTICS settled = ROW_COUNT;
  bad_debt := 0;
  IF settled = 0 THEN
    RETURN;
  END IF;
  -- Fees in, each with the balance after it.
  INSERT INTO insurance_fund_history (kind, amount, balance, liquidation_id, account_id, actor)
    SELECT 'fee', s.fee, f.balance + sum(s.fee) OVER (ORDER BY s.rank), s.liquidation_id, s.account_id, s.actor
    FROM settling s WHERE s.fee > 0 ORDER BY s.rank;
  SELECT coalesce(sum(s.fee), 0) INTO fees FROM settling s;
  after_fees := f.balance + fees;
  -- Shortfalls out, in rank order.
  CREATE TEMP TABLE IF NOT EXISTS drawn (liquidation_id bigint, account_id bigint, shortfall numeric, paid numeric, balance numeric, actor text, rank bigint) ON COMMIT DROP;
  TRUNCATE drawn;
  INSERT INTO drawn
    SELECT w.liquidation_id, w.account_id, w.shortfall,
           least(w.shortfall, greatest(after_fees - w.before, 0)),
           greatest(after_fees - w.before - w.shortfall, 0), w.actor, w.rank
    FROM (SELECT s.*, coalesce(sum(s.shortfall) OVER (ORDER BY s.rank ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
          FROM settling s) AS w;
  INSERT INTO insurance_fund_history (kind, amount, balance, liquidation_id, account_id, shortfall, bad_debt, actor)
    SELECT 'shortfall', d.paid, d.balance, d.liquidation_id, d.account_id, d.shortfall, d.shortfall - d.paid, d.actor
    FROM drawn d WHERE d.shortfall > 0 ORDER BY d.rank;
  UPDATE liquidations l SET settled = true, fund_paid = d.paid, bad_debt = d.shortfall - d.paid
    FROM drawn d WHERE l.liquidation_id = d.liquidation_id;
  SELECT coalesce(sum(d.paid), 0), coalesce(sum(d.shortfall - d.paid), 0) INTO paid_total, bad_debt FROM drawn d;
  UPDATE insurance_fund AS i SET balance = after_fees - paid_total, fees_received = f.fees_received + fees,
                                 shortfalls_paid = f.shortfalls_paid + paid_total, bad_debt = f.bad_debt + settle_insurance.bad_debt,
                                 updated_at = now()
    WHERE i.id = 1;
END $$;

-- A treasury deposit into the fund.
CREATE OR REPLACE FUNCTION insurance_deposit(p_amount numeric, p_actor text) RETURNS SETOF insurance_fund
LANGUAGE plpgsql AS $$
DECLARE
  f insurance_fund%ROWTYPE;
BEGIN
  UPDATE insurance_fund SET balance = balance + p_amount, deposits = deposits + p_amount, updated_at = now()
    WHERE id = 1 RETURNING * INTO f;
  INSERT INTO insurance_fund_history (kind, amount, balance, actor) VALUES ('deposit', p_amount, f.balance, p_actor);
  RETURN NEXT f;
END $$;
