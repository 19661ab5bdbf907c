#!/usr/bin/env bash
# The project's test command (`make test`; .ci/run runs exactly this): lint, unit and handler
# tests, adapter tests against a real DynamoDB Local, end-to-end tests through the local stack,
# the mini-program client's tests under Node, template checks, and `sam build`.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/lib.sh
bash infra/install.sh
tools_on_path

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "template: cfn-lint, sam validate --lint"
cfn-lint template.yaml
sam validate --lint
step "template: checkov (every finding fixed, or skipped in the resource's Metadata with the reason)"
# It tries to fetch guideline texts from its vendor first; offline that fails and it goes on.
.tools/checkov/bin/checkov -f template.yaml --framework cloudformation --compact --quiet 2>/dev/null
step "build the function binaries and the tests"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run
step "tests: unit, handler, adapter (DynamoDB Local) and end-to-end (local stack), in a loopback-only network namespace"
mkdir -p .tools
# Root-only tests (acting as another local user) are #[ignore = "needs root"], so that they show
# as ignored rather than passing unseen elsewhere; as root (CI) they run.
include_root_only=()
if [ "$(id -u)" = 0 ]; then include_root_only=(-- --include-ignored); fi
run_loopback_only cargo test --workspace --locked --offline "${include_root_only[@]}" 2>&1 | tee .tools/test-output.log
step "mini-program client (clients/miniprogram): its tests under Node against the local stack, loopback only"
npm ci --silent --no-audit --no-fund --prefix clients/miniprogram >/dev/null
run_loopback_only node --test --test-reporter=tap clients/miniprogram/test/ 2>&1 | tee .tools/node-test-output.log
summary=$(awk '/^test result:/ {p += $4; f += $6; i += $8} /^# pass / {p += $3} /^# fail / {f += $3}
  END {printf "%d passed, %d failed, %d ignored (root-only; run as root)", p, f, i}' .tools/test-output.log .tools/node-test-output.log)
step "sam build (release, arm64, through cargo-lambda)"
sam build --beta-features
for fn in ConnectFunction DefaultFunction DisconnectFunction ThumbnailFunction LoginFunction TokenKeeperFunction RecheckFunction WeChatPushFunction NotifyFunction; do
  test -x ".aws-sam/build/$fn/bootstrap" || { echo "sam build made no bootstrap for $fn" >&2; exit 1; }
done
echo "sam build: a bootstrap for each of the 9 functions"
echo
echo "tests: $summary"
