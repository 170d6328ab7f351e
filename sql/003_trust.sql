-- The trust boundary: API keys, who did what (actor), the market registry and
-- its history, and the marks' sweep bookkeeping.

-- API keys. Only a SHA-256 of each key is stored (keys are 256-bit random
-- secrets, so a fast hash is enough: there is nothing to brute-force).
-- `version` rises on every change (creation, revocation), so each engine
-- process reads only what changed since its last poll.
CREATE SEQUENCE api_key_versions;

CREATE TABLE api_keys (
  key_id      text        PRIMARY KEY,
  name        text        NOT NULL,
  role        text        NOT NULL CHECK (role IN ('admin', 'operator', 'treasury', 'trading', 'reader', 'account')),
  account_ids bigint[]    NOT NULL DEFAULT '{}',
  key_hash    bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text,                 -- the key that created it (null: the CLI or the first start)
  revoked_at  timestamptz,
  revoked_by  text,
  version     bigint      NOT NULL DEFAULT nextval('api_key_versions'),
  CHECK ((role = 'account') = (cardinality(account_ids) > 0))
);
CREATE INDEX api_keys_version ON api_keys (version);

-- Audit: the key behind every ledger row and liquidation ('admin-env' for
-- ADMIN_API_KEY; null with AUTH=off, and for rows written before this column).
ALTER TABLE ledger ADD COLUMN actor text;
ALTER TABLE liquidations ADD COLUMN actor text;

-- The market registry. `params` holds only the parameters set for this
-- market (snake_case, as the API names them); the others follow the
-- engine's defaults (TRADE_PRICE_BAND, ...). `version` rises on every
-- change; `applied_version` says which one Redis is known to hold.
CREATE TABLE markets (
  symbol          text        PRIMARY KEY,
  status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'reduce_only', 'halted')),
  params          jsonb       NOT NULL DEFAULT '{}',
  version         bigint      NOT NULL DEFAULT 1,
  applied_version bigint      NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Markets that existed before the registry: every symbol with a mark or a trade.
INSERT INTO markets (symbol)
  SELECT symbol FROM mark_prices
  UNION SELECT DISTINCT symbol FROM ledger WHERE kind = 'TRADE'
ON CONFLICT DO NOTHING;

-- A mark is committed here first; `swept_version` is the newest version whose
-- liquidation sweep finished. Recovery finishes any sweep behind its mark.
ALTER TABLE mark_prices ADD COLUMN swept_version bigint NOT NULL DEFAULT 0;
UPDATE mark_prices SET swept_version = version;
ALTER TABLE mark_prices ADD COLUMN actor text;

-- Each market's history: listing, marks, parameter changes (and funding, later).
CREATE TABLE market_events (
  event_id       bigserial   PRIMARY KEY,
  symbol         text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('listed', 'mark', 'params', 'funding')),
  price          numeric,               -- mark: the new mark
  previous_price numeric,               -- mark: the one it replaced (null: the first)
  version        bigint,                -- mark: its version in mark_prices
  forced         boolean,               -- mark: posted with "force": true
  changes        jsonb,                 -- listed, params: the parameters set
  actor          text,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX market_events_symbol ON market_events (symbol, event_id DESC);

-- A mark post in one statement (one round trip): lists the market if the
-- symbol is new, checks the move guard against the mark it replaces (under
-- the market row's lock), and records the mark and its history. A refused
-- mark writes nothing (`r_refused`, with the mark and the fraction it was
-- checked against). Numeric arithmetic, so the guard is exact.
CREATE FUNCTION post_mark(p_symbol text, p_price numeric, p_actor text, p_force boolean, p_default_max_move numeric)
RETURNS TABLE (r_refused boolean, r_version bigint, r_previous numeric, r_max_move numeric,
               r_listed boolean, r_status text, r_params jsonb, r_market_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
  m markets%ROWTYPE;
  was_listed boolean := false;
  prev numeric;
  mv numeric;
  v bigint;
BEGIN
  INSERT INTO markets AS k (symbol) VALUES (p_symbol) ON CONFLICT (symbol) DO NOTHING RETURNING k.* INTO m;
  IF FOUND THEN
    was_listed := true;
    INSERT INTO market_events (symbol, kind, changes, actor) VALUES (p_symbol, 'listed', jsonb_build_object('status', m.status), p_actor);
  ELSE
    SELECT k.* INTO m FROM markets k WHERE k.symbol = p_symbol FOR UPDATE;
  END IF;
  SELECT p.price INTO prev FROM mark_prices p WHERE p.symbol = p_symbol;
  mv := COALESCE((m.params->>'max_mark_move')::numeric, p_default_max_move);
  IF NOT p_force AND prev IS NOT NULL AND mv > 0 AND abs(p_price - prev) > mv * prev THEN
    RETURN QUERY SELECT true, NULL::bigint, prev, mv, false, NULL::text, NULL::jsonb, NULL::bigint;
    RETURN;
  END IF;
  INSERT INTO mark_prices AS p (symbol, price, actor) VALUES (p_symbol, p_price, p_actor)
    ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, version = p.version + 1, updated_at = now(), actor = EXCLUDED.actor
    RETURNING p.version INTO v;
  INSERT INTO market_events (symbol, kind, price, previous_price, version, forced, actor)
    VALUES (p_symbol, 'mark', p_price, prev, v, p_force, p_actor);
  RETURN QUERY SELECT false, v, prev, mv, was_listed, m.status, m.params, m.version;
END $$;
