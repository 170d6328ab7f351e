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
-- Returns how many liquidations it settled, and the bad debt they added.
CREATE OR REPLACE FUNCTION settle_insurance(OUT settled integer, OUT bad_debt numeric)
LANGUAGE plpgsql AS $$
DECLARE
  f insurance_fund%ROWTYPE;
  ids bigint[];
  r record;
  paid numeric;
  debt_before numeric;
BEGIN
  SELECT * INTO f FROM insurance_fund WHERE id = 1 FOR UPDATE;
  debt_before := f.bad_debt;
  ids := ARRAY(SELECT liquidation_id FROM liquidations WHERE NOT liquidations.settled ORDER BY account_id, liquidation_id FOR UPDATE);
  settled := cardinality(ids);
  bad_debt := 0;
  IF settled = 0 THEN
    RETURN;
  END IF;
  FOR r IN SELECT liquidation_id, account_id, fee, actor FROM liquidations
           WHERE liquidation_id = ANY(ids) AND fee > 0 ORDER BY account_id, liquidation_id LOOP
    f.balance := f.balance + r.fee;
    f.fees_received := f.fees_received + r.fee;
    INSERT INTO insurance_fund_history (kind, amount, balance, liquidation_id, account_id, actor)
      VALUES ('fee', r.fee, f.balance, r.liquidation_id, r.account_id, r.actor);
  END LOOP;
  FOR r IN SELECT liquidation_id, account_id, shortfall, actor FROM liquidations
           WHERE liquidation_id = ANY(ids) ORDER BY account_id, liquidation_id LOOP
    paid := LEAST(r.shortfall, f.balance);
    IF r.shortfall > 0 THEN
      f.balance := f.balance - paid;
      f.shortfalls_paid := f.shortfalls_paid + paid;
      f.bad_debt := f.bad_debt + (r.shortfall - paid);
      INSERT INTO insurance_fund_history (kind, amount, balance, liquidation_id, account_id, shortfall, bad_debt, actor)
        VALUES ('shortfall', paid, f.balance, r.liquidation_id, r.account_id, r.shortfall, r.shortfall - paid, r.actor);
    END IF;
    UPDATE liquidations AS l SET settled = true, fund_paid = paid, bad_debt = r.shortfall - paid WHERE l.liquidation_id = r.liquidation_id;
  END LOOP;
  UPDATE insurance_fund AS i SET balance = f.balance, fees_received = f.fees_received, shortfalls_paid = f.shortfalls_paid,
                            bad_debt = f.bad_debt, updated_at = now()
    WHERE i.id = 1;
  bad_debt := f.bad_debt - debt_before;
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
