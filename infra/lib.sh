# Helpers sourced by infra/*.sh.

tools_on_path() {
  export PATH="$PWD/.tools/venv/bin:$PATH"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0
}

step() { printf '\n==> %s\n' "$*"; }

# Runs "$@" in a network namespace that has only a loopback interface, so that servers the
# command starts (DynamoDB Local listens on every interface) are reachable from nowhere else.
# Root uses `unshare -n`; others try an unprivileged user namespace; failing both, it runs
# in the host network and says so.
run_loopback_only() {
  if unshare -n true 2>/dev/null; then
    unshare -n -- bash -c 'ip link set lo up && exec "$@"' _ "$@"
  elif unshare -rn true 2>/dev/null; then
    unshare -rn -- bash -c 'ip link set lo up && exec "$@"' _ "$@"
  else
    echo "note: no network namespace available; local servers listen on all interfaces" >&2
    "$@"
  fi
}
