-- A mark post in one statement (one round trip): lists the market if the
-- symbol is new, checks the move guard against the mark it replaces (under
-- the market row's lock), and records the mark and its history. A refused
-- mark writes nothing (`r_refused`, with the mark and the fraction it was
-- checked against). Numeric arithmetic, so the guard is exact.
CREATE OR REPLACE FUNCTION post_mark(p_symbol text, p_price numeric, p_actor text, p_force boolean, p_default_max_move numeric)
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
