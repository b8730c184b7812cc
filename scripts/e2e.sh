#!/usr/bin/env bash
# End-to-end browser test: token-broker's local mode (target/debug/serve) against a real OAuth 2.0
# / OpenID Connect server (oidc-provider, from npm: e2e/provider.mjs), with a person's login
# driven through headless Chromium (e2e/e2e.test.mjs, with playwright-core).
#
# Installs what is missing (Debian's chromium, the npm packages pinned in e2e/package-lock.json),
# builds the broker, starts the provider and the broker on free loopback ports, runs the test, and
# stops both whatever happens, printing their logs on failure. Screenshots and logs: target/e2e/.
# Ends with `e2e: N passed, N failed`.
#
# Knobs: E2E_SERVE_BIN runs that broker binary instead of building one; CHROMIUM another browser;
# E2E_TOKEN_AUTH_METHOD=client_secret_basic registers and uses HTTP Basic client authentication.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
out="$root/target/e2e"
mkdir -p "$out"
rm -f "$out"/*.png "$out"/*.log "$out"/provider-events.json

say() { echo "e2e: $*"; }

pids=()
work=""
finish() {
  local rc=$?
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for log in provider broker; do
      if [ -s "$out/$log.log" ]; then
        echo "---- $log log (last 150 lines of $out/$log.log) ----"
        tail -n 150 "$out/$log.log"
      fi
    done
    echo "----"
  fi
  [ -n "$work" ] && rm -rf "$work"
  if [ "$rc" -eq 0 ]; then say "1 passed, 0 failed"; else say "0 passed, 1 failed"; fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { say "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi

# ---- what the test needs ------------------------------------------------------------------
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  say "installing chromium from Debian's packages"
  $sudo timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo timeout 900 apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null
  [ -x "$chromium_bin" ] || die "$chromium_bin missing after installing chromium"
fi

command -v node >/dev/null 2>&1 || die "node (>= 20) is required"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node >= 20 is required, found $(node --version)"

# npm ci only when the lock file changed since the last install (it wipes node_modules).
if ! cmp -s e2e/package-lock.json e2e/node_modules/.e2e-installed-lock 2>/dev/null; then
  say "installing e2e/ npm packages (npm ci)"
  (cd e2e && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
  cp e2e/package-lock.json e2e/node_modules/.e2e-installed-lock
fi

if [ -n "${E2E_SERVE_BIN:-}" ]; then
  serve="$E2E_SERVE_BIN"
else
  say "building the broker (cargo build --locked --features local --bin serve)"
  cargo build --locked --features local --bin serve
  serve="${CARGO_TARGET_DIR:-$root/target}/debug/serve"
  case "$serve" in /*) ;; *) serve="$root/$serve" ;; esac
fi
[ -x "$serve" ] || die "no broker binary at $serve"

# ---- configuration ------------------------------------------------------------------------
random() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='; }
read -r provider_port broker_port < <(node -e '
  const net = require("node:net");
  const a = net.createServer().listen(0, "127.0.0.1", () => {
    const b = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port); a.close(); b.close();
    });
  });')
work=$(mktemp -d)
mkdir -m 700 "$work/broker" "$work/data"

export PROVIDER_URL="http://127.0.0.1:$provider_port"
export BROKER_URL="http://127.0.0.1:$broker_port"
export CLIENT_ID="token-broker-e2e"
CLIENT_SECRET=$(random)
API_KEY=$(random)
OAUTH_STATE=$(random)
export CLIENT_SECRET API_KEY OAUTH_STATE
export SCOPES="openid offline_access"
export TOKEN_AUTH_METHOD="${E2E_TOKEN_AUTH_METHOD:-client_secret_post}" # or client_secret_basic
export ACCESS_TOKEN_TTL=70 # provider's access token lifetime
export REFRESH_SKEW=65     # so that every /token call more than 5 s after a refresh refreshes
export SCREENSHOT_DIR="$out"
export CHROMIUM="$chromium_bin"
redirect_uri="$BROKER_URL/callback"

wait_listening() { # name pid port seconds
  local deadline=$((SECONDS + $4))
  until (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || die "$1 exited before listening on port $3"
    [ "$SECONDS" -lt "$deadline" ] || die "$1 not listening on port $3 after $4 s"
    sleep 0.1
  done
}

# ---- the provider -------------------------------------------------------------------------
env -i PATH="$PATH" HOME="$work" NODE_ENV=test \
  PROVIDER_PORT="$provider_port" CLIENT_ID="$CLIENT_ID" CLIENT_SECRET="$CLIENT_SECRET" \
  REDIRECT_URI="$redirect_uri" ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" TOKEN_AUTH_METHOD="$TOKEN_AUTH_METHOD" \
  node "$root/e2e/provider.mjs" >"$out/provider.log" 2>&1 &
pids+=($!)
wait_listening "the provider (oidc-provider)" "$!" "$provider_port" 20
say "provider listening at $PROVIDER_URL"

# ---- the broker: a clean environment, run from an empty directory so no .env is read -------
(
  cd "$work/broker"
  exec env -i PATH="$PATH" HOME="$work" RUST_LOG=info RUST_BACKTRACE=1 \
    CLIENT_ID="$CLIENT_ID" CLIENT_SECRET="$CLIENT_SECRET" \
    TOKEN_URL="$PROVIDER_URL/token" AUTHORIZE_URL="$PROVIDER_URL/auth" \
    REVOCATION_URL="$PROVIDER_URL/token/revocation" TOKEN_AUTH_METHOD="$TOKEN_AUTH_METHOD" \
    SCOPES="$SCOPES" REDIRECT_URI="$redirect_uri" OAUTH_STATE="$OAUTH_STATE" API_KEY="$API_KEY" \
    BIND=127.0.0.1 PORT="$broker_port" DATA_DIR="$work/data" REFRESH_SKEW="$REFRESH_SKEW" \
    "$serve"
) >"$out/broker.log" 2>&1 &
pids+=($!)
wait_listening "the broker" "$!" "$broker_port" 30
say "broker listening at $BROKER_URL"

# ---- the test -----------------------------------------------------------------------------
# The test's own summary line is left to finish(), which prints it after any logs.
(cd e2e && E2E_SUMMARY=0 E2E_TIMEOUT_MS=150000 timeout 170 node e2e.test.mjs)
