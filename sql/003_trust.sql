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

