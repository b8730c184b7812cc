#!/usr/bin/env bash
# Runs a command with the real services the tests need, each on a free loopback port, and stops
# them afterwards whatever the command's outcome:
#   - a throw-away redis-server, exported as TOKEN_BROKER_TEST_REDIS (installed from Debian's
#     packages when it is not on PATH);
#   - a Redis Cluster of three masters with a replica each, from the same redis-server, built
#     with `redis-cli --cluster create`; one node's URL is exported as
#     TOKEN_BROKER_TEST_REDIS_CLUSTER;
#   - a DynamoDB-compatible server (moto in server mode, pinned below, installed from PyPI into
#     target/dynamodb-venv when missing), exported as TOKEN_BROKER_TEST_DYNAMODB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MOTO_VERSION=5.2.5
venv=target/dynamodb-venv

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it from Debian's packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -f "$venv/.moto-$MOTO_VERSION" ]; then
  echo "installing moto $MOTO_VERSION (DynamoDB emulator) into $venv" >&2
  python3 -m venv "$venv" 2>/dev/null || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q "moto[server,dynamodb]==$MOTO_VERSION"
  touch "$venv/.moto-$MOTO_VERSION"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Twelve free ports, a client port and a cluster bus port for each of six nodes, below the
# range the kernel hands out to outgoing connections (which could take one before a node binds it).
free_cluster_ports() {
  python3 - <<'PY'
import random, socket
ports = []
while len(ports) < 12:
    port = random.randrange(10000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        if port not in ports: ports.append(port)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, ports)))
PY
}

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Waits until `check` succeeds, or fails with the service's log if it died or took too long.
await_service() {
  local name=$1 pid=$2 log=$3 check=$4
  for _ in $(seq 1 200); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name did not start:" >&2; cat "$log" >&2; exit 1; fi
    sleep 0.05
  done
  echo "$name did not answer within 10 s:" >&2; cat "$log" >&2; exit 1
}

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$dir" \
  --daemonize no --logfile "$dir/redis.log" &
pids+=($!)
await_service redis-server "${pids[-1]}" "$dir/redis.log" "redis-cli -p $redis_port ping"

read -r -a free <<<"$(free_cluster_ports)"
cluster_ports=""
cluster_nodes=()
for n in 0 1 2 3 4 5; do
  port=${free[$n]} bus=${free[$((n + 6))]}
  mkdir -p "$dir/cluster-$port"
  redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-port "$bus" \
    --cluster-config-file "$dir/cluster-$port/nodes.conf" --cluster-node-timeout 2000 \
    --save "" --appendonly no --dir "$dir/cluster-$port" --daemonize no \
    --logfile "$dir/cluster-$port/redis.log" &
  pids+=($!)
  await_service "redis-server (cluster node $port)" "${pids[-1]}" "$dir/cluster-$port/redis.log" \
    "redis-cli -p $port ping"
  cluster_ports="$cluster_ports $port"
  cluster_nodes+=("127.0.0.1:$port")
done
cluster_ports=${cluster_ports# }
redis-cli --cluster create "${cluster_nodes[@]}" --cluster-replicas 1 --cluster-yes \
  >"$dir/cluster-create.log" 2>&1 || { cat "$dir/cluster-create.log" >&2; exit 1; }
first_cluster_port=${cluster_ports%% *}
for port in $cluster_ports; do
  await_service "the Redis Cluster (node $port)" "${pids[0]}" "$dir/cluster-create.log" \
    "redis-cli -p $port cluster info | grep -q cluster_state:ok"
done

dynamodb_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$dynamodb_port" >"$dir/moto.log" 2>&1 &
pids+=($!)
await_service moto "${pids[-1]}" "$dir/moto.log" \
  "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $dynamodb_port), 1)'"

export TOKEN_BROKER_TEST_REDIS="redis://127.0.0.1:$redis_port"
export TOKEN_BROKER_TEST_REDIS_CLUSTER="redis://127.0.0.1:$first_cluster_port"
export TOKEN_BROKER_TEST_DYNAMODB="http://127.0.0.1:$dynamodb_port"
"$@"
