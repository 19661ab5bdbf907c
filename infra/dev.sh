#!/usr/bin/env bash
# `make dev`: builds the functions, starts DynamoDB Local with the template's tables, mints
# tokens for two demo users, and serves the three functions through `cargo lambda watch` on
# 127.0.0.1:9000 so that the sample events can be invoked. Ctrl-C stops everything.
#
# The local API Gateway WebSocket endpoint (a wss URL for real clients) is issue
# "Run it all locally"; until it lands, $default's posts to clients have nowhere to go and
# are logged as failed, while everything else (auth, storage, paging) runs for real.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/lib.sh
bash infra/install.sh
tools_on_path

step "build"
cargo build --workspace --bins

mkdir -p .local/events
JWT_SECRET="${JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export JWT_SECRET

rm -f .local/dynamodb.env
target/debug/local-dynamodb .local/dynamodb.env &
DDB_PID=$!
trap 'kill $DDB_PID 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 150); do [ -s .local/dynamodb.env ] && break; sleep 0.2; done
[ -s .local/dynamodb.env ] || { echo "DynamoDB Local did not start" >&2; exit 1; }

{
  cat .local/dynamodb.env
  echo "JWT_SECRET=$JWT_SECRET"
  echo "MANAGEMENT_ENDPOINT=http://127.0.0.1:9/dev"
  echo "DISPLAY_UTC_OFFSET=+08:00"
} > .local/functions.env

A=13800000001 B=13800000002 APP=wxdemo
TOKEN_A=$(target/debug/mint-token "$A" "$APP" Ann)
TOKEN_B=$(target/debug/mint-token "$B" "$APP" Bob)
sed "s/REPLACE_WITH_A_TOKEN_FROM_mint-token/$TOKEN_A/g" events/connect.json > .local/events/connect-ann.json
cp events/default-*.json events/disconnect.json .local/events/

cat <<MSG

Local chat functions (DynamoDB Local + cargo lambda watch on 127.0.0.1:9000).
Demo users in app $APP:  Ann $A  and  Bob $B
  Ann's token: $TOKEN_A
  Bob's token: $TOKEN_B
In another terminal, from $(pwd):
  export PATH=\$PWD/.tools/venv/bin:\$PATH
  cargo lambda invoke chat-connect    --data-file .local/events/connect-ann.json
  cargo lambda invoke chat-default    --data-file .local/events/default-send.json
  cargo lambda invoke chat-default    --data-file .local/events/default-sync.json
  cargo lambda invoke chat-disconnect --data-file .local/events/disconnect.json
(statusCode 200 = accepted; try connect with a wrong token for 401.)
Mint more tokens: JWT_SECRET=$JWT_SECRET target/debug/mint-token <account> $APP [name]
Ctrl-C stops everything.

MSG
cargo lambda watch -A 127.0.0.1 -P 9000 --env-file .local/functions.env
