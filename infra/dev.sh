#!/usr/bin/env bash
# `make dev`: installs what is missing, builds, and runs the whole chat on 127.0.0.1 — the
# local API Gateway WebSocket endpoint running the function binaries, DynamoDB Local with the
# template's tables, and s3s-fs — then prints the wss URL, two demo users and how to chat.
# Ctrl-C stops everything. PORT=3001 by default; PARAMS="Name=value ..." overrides template
# parameters (make dev PARAMS="MaxSendsPerMinute=1000 RecallWindowSeconds=30").
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/lib.sh
bash infra/install.sh
step "build"
cargo build --workspace --bins
args=(--port "${PORT:-3001}")
if [ -n "${PARAMS:-}" ]; then args+=(--parameter-overrides "$PARAMS"); fi
exec target/debug/local-stack "${args[@]}"
