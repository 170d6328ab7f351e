#!/usr/bin/env bash
# Prints the README's walkthrough with the real responses of a running
# engine: each comment, each command as the README shows it, and what the
# engine answered. Run it against a fresh engine (empty database and Redis
# prefix) started with ADMIN_API_KEY, e.g.
#
#   ADMIN_API_KEY=$(openssl rand -hex 24) REDIS_KEY_PREFIX=walk DATABASE_SCHEMA=walk npm start &
#   ADMIN=<that key> bash docs/walkthrough.sh
#
# and paste its output into README.md's walkthrough block.
set -euo pipefail
BASE="${BASE:-localhost:8000}"
: "${ADMIN:?set ADMIN to the ADMIN_API_KEY the engine was started with}"
JSON='content-type: application/json'

say() { printf '%s\n' "$*"; }
q() { curl -s "$@"; }
keyof() { sed -E 's/.*"key":"([^"]+)".*/\1/'; }

say '# An admin creates a key per role; the secret ("key") is shown only in this answer: $OPERATOR below'
out=$(q "$BASE/admin/keys" -H "authorization: Bearer $ADMIN" -H "$JSON" -d '{"name": "desk operator", "role": "operator"}')
say "curl -s localhost:8000/admin/keys -H \"authorization: Bearer \$ADMIN\" -H \"\$JSON\" -d '{\"name\": \"desk operator\", \"role\": \"operator\"}'"
say "$out"
OPERATOR=$(printf '%s' "$out" | keyof)
TREASURY=$(q "$BASE/admin/keys" -H "authorization: Bearer $ADMIN" -H "$JSON" -d '{"name": "treasury", "role": "treasury"}' | keyof)
TRADING=$(q "$BASE/admin/keys" -H "authorization: Bearer $ADMIN" -H "$JSON" -d '{"name": "matching engine", "role": "trading"}' | keyof)
ALICE=$(q "$BASE/admin/keys" -H "authorization: Bearer $ADMIN" -H "$JSON" -d '{"name": "alice", "role": "account", "account_ids": [1]}' | keyof)
say '# likewise $TREASURY (role treasury), $TRADING (role trading)'
say '# and $ALICE: {"name": "alice", "role": "account", "account_ids": [1]}'

run() {
  # run 'comment-free command text' key path [curl options...]
  local text="$1" key="$2" path="$3"
  shift 3
  say "$text"
  q "$BASE$path" -H "authorization: Bearer $key" "$@"
  say ''
}

say ''
say '# The first mark lists the market'
run "curl -s localhost:8000/mark-price -H \"authorization: Bearer \$OPERATOR\" -H \"\$JSON\" -d '{\"symbol\": \"BTC-PERP\", \"price\": 50000}'" \
  "$OPERATOR" /mark-price -H "$JSON" -d '{"symbol": "BTC-PERP", "price": 50000}'
say ''
say '# Fund account 1 (and, the same way, account 2 with 1000 and account 3 with 5000)'
run "curl -s localhost:8000/accounts/1/deposit -H \"authorization: Bearer \$TREASURY\" -H \"\$JSON\" -d '{\"amount\": 10000}'" \
  "$TREASURY" /accounts/1/deposit -H "$JSON" -d '{"amount": 10000}'
q "$BASE/accounts/2/deposit" -H "authorization: Bearer $TREASURY" -H "$JSON" -d '{"amount": 1000}' >/dev/null
q "$BASE/accounts/3/deposit" -H "authorization: Bearer $TREASURY" -H "$JSON" -d '{"amount": 5000}' >/dev/null
say ''
say '# What a trade would do, before sending it: booked nothing, and the liquidation price it would leave'
run "curl -s localhost:8000/trade/preview -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 2, \"symbol\": \"BTC-PERP\", \"side\": \"BUY\", \"quantity\": 0.1, \"price\": 50000}'" \
  "$TRADING" /trade/preview -H "$JSON" -d '{"account_id": 2, "symbol": "BTC-PERP", "side": "BUY", "quantity": 0.1, "price": 50000}'
say ''
say '# Trades'
run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 1, \"symbol\": \"BTC-PERP\", \"side\": \"BUY\", \"quantity\": 0.1, \"price\": 50000}'" \
  "$TRADING" /trade -H "$JSON" -d '{"account_id": 1, "symbol": "BTC-PERP", "side": "BUY", "quantity": 0.1, "price": 50000}'
run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 2, \"symbol\": \"BTC-PERP\", \"side\": \"BUY\", \"quantity\": 0.1, \"price\": 50000}'" \
  "$TRADING" /trade -H "$JSON" -d '{"account_id": 2, "symbol": "BTC-PERP", "side": "BUY", "quantity": 0.1, "price": 50000}'
say '# (and account 3 sells 0.2 at 50000)'
q "$BASE/trade" -H "authorization: Bearer $TRADING" -H "$JSON" -d '{"account_id": 3, "symbol": "BTC-PERP", "side": "SELL", "quantity": 0.2, "price": 50000}' >/dev/null
say ''
say '# With a client_order_id, the same request sent again returns the first result and books nothing'
for _ in 1 2; do
  run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 1, \"symbol\": \"BTC-PERP\", \"side\": \"SELL\", \"quantity\": \"0.05\", \"price\": \"50500\", \"client_order_id\": \"ord-42\"}'" \
    "$TRADING" /trade -H "$JSON" -d '{"account_id": 1, "symbol": "BTC-PERP", "side": "SELL", "quantity": "0.05", "price": "50500", "client_order_id": "ord-42"}'
done
say ''
say '# Refused trades: not enough margin; a price outside the band around the mark'
run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 2, \"symbol\": \"BTC-PERP\", \"side\": \"BUY\", \"quantity\": 0.01, \"price\": 50000}'" \
  "$TRADING" /trade -H "$JSON" -d '{"account_id": 2, "symbol": "BTC-PERP", "side": "BUY", "quantity": 0.01, "price": 50000}'
run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 1, \"symbol\": \"BTC-PERP\", \"side\": \"SELL\", \"quantity\": \"0.05\", \"price\": \"99999\"}'" \
  "$TRADING" /trade -H "$JSON" -d '{"account_id": 1, "symbol": "BTC-PERP", "side": "SELL", "quantity": "0.05", "price": "99999"}'
say ''
say '# An account key reads its own account, and only that'
run "curl -s localhost:8000/positions/1 -H \"authorization: Bearer \$ALICE\"" "$ALICE" /positions/1
run "curl -s localhost:8000/positions/2 -H \"authorization: Bearer \$ALICE\"" "$ALICE" /positions/2
say ''
say '# The treasury pays into the insurance fund, which covers shortfalls'
run "curl -s localhost:8000/insurance-fund/deposit -H \"authorization: Bearer \$TREASURY\" -H \"\$JSON\" -d '{\"amount\": 2500}'" \
  "$TREASURY" /insurance-fund/deposit -H "$JSON" -d '{"amount": 2500}'
say ''
say "# At 44000 account 2 (equity 400) is below maintenance margin (440): the tick liquidates it"
run "curl -s localhost:8000/mark-price -H \"authorization: Bearer \$OPERATOR\" -H \"\$JSON\" -d '{\"symbol\": \"BTC-PERP\", \"price\": 44000}'" \
  "$OPERATOR" /mark-price -H "$JSON" -d '{"symbol": "BTC-PERP", "price": 44000}'
run "curl -s 'localhost:8000/liquidations?account_id=2' -H \"authorization: Bearer \$OPERATOR\"" "$OPERATOR" '/liquidations?account_id=2'
run "curl -s localhost:8000/trades/2 -H \"authorization: Bearer \$OPERATOR\"" "$OPERATOR" /trades/2
say ''
say '# The margin report, riskiest first, a page at a time'
page=$(q "$BASE/margin-report?limit=2" -H "authorization: Bearer $OPERATOR")
say "curl -s 'localhost:8000/margin-report?limit=2' -H \"authorization: Bearer \$OPERATOR\""
say "$page"
cursor=$(printf '%s' "$page" | sed -E 's/.*"next_cursor":"([^"]+)".*/\1/')
run "curl -s 'localhost:8000/margin-report?limit=2&cursor=$cursor' -H \"authorization: Bearer \$OPERATOR\"" "$OPERATOR" "/margin-report?limit=2&cursor=$cursor"
say ''
say '# Polling: the report carries an ETag; sent back while nothing changed, the answer is 304'
head=$(q -i "$BASE/margin-report?limit=2" -H "authorization: Bearer $OPERATOR" | head -3 | tr -d '\r')
say "curl -s -i 'localhost:8000/margin-report?limit=2' -H \"authorization: Bearer \$OPERATOR\" | head -3"
say "$head"
etag=$(printf '%s\n' "$head" | sed -nE 's/^etag: (.*)$/\1/p')
say "curl -s -i 'localhost:8000/margin-report?limit=2' -H \"authorization: Bearer \$OPERATOR\" -H 'if-none-match: $etag' | head -1"
q -i "$BASE/margin-report?limit=2" -H "authorization: Bearer $OPERATOR" -H "if-none-match: $etag" | head -1 | tr -d '\r'
say ''
say '# Funding at the mark: account 1 (long 0.05) pays 0.05 × 44000 × 0.0001, account 3 (short 0.2) receives 0.88'
run "curl -s localhost:8000/funding -H \"authorization: Bearer \$OPERATOR\" -H \"\$JSON\" -d '{\"symbol\": \"BTC-PERP\", \"rate\": \"0.0001\", \"funding_id\": \"BTC-PERP-2026-12-02T10\"}'" \
  "$OPERATOR" /funding -H "$JSON" -d '{"symbol": "BTC-PERP", "rate": "0.0001", "funding_id": "BTC-PERP-2026-12-02T10"}'
say '# The same funding_id with another rate'
run "curl -s localhost:8000/funding -H \"authorization: Bearer \$OPERATOR\" -H \"\$JSON\" -d '{\"symbol\": \"BTC-PERP\", \"rate\": \"0.0002\", \"funding_id\": \"BTC-PERP-2026-12-02T10\"}'" \
  "$OPERATOR" /funding -H "$JSON" -d '{"symbol": "BTC-PERP", "rate": "0.0002", "funding_id": "BTC-PERP-2026-12-02T10"}'
say '# Account 3 ledger: every change to its balance, with what each did (here only funding and cash)'
run "curl -s 'localhost:8000/accounts/3/ledger?kinds=FUNDING,DEPOSIT' -H \"authorization: Bearer \$OPERATOR\"" "$OPERATOR" '/accounts/3/ledger?kinds=FUNDING,DEPOSIT'
say ''
say '# Fees: after PUT /markets/BTC-PERP {"maker_fee_rate": "-0.0001", "taker_fee_rate": "0.0005"}, a maker fill earns the rebate'
q "$BASE/markets/BTC-PERP" -X PUT -H "authorization: Bearer $OPERATOR" -H "$JSON" -d '{"maker_fee_rate": "-0.0001", "taker_fee_rate": "0.0005"}' >/dev/null
run "curl -s localhost:8000/trade -H \"authorization: Bearer \$TRADING\" -H \"\$JSON\" -d '{\"account_id\": 3, \"symbol\": \"BTC-PERP\", \"side\": \"BUY\", \"quantity\": 0.1, \"price\": 44000, \"liquidity\": \"maker\"}'" \
  "$TRADING" /trade -H "$JSON" -d '{"account_id": 3, "symbol": "BTC-PERP", "side": "BUY", "quantity": 0.1, "price": 44000, "liquidity": "maker"}'
say ''
say '# The insurance fund: what the treasury paid in, what it received and paid out'
run "curl -s localhost:8000/insurance-fund -H \"authorization: Bearer \$OPERATOR\"" "$OPERATOR" /insurance-fund
say ''
say '# No key'
say "curl -s -i localhost:8000/positions/1 | sed -n '1,2p;\$p'"
q -i "$BASE/positions/1" | tr -d '\r' | sed -n '1,2p;$p'
