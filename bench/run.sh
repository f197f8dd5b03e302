#!/usr/bin/env bash
# Runs every benchmark scenario against a Release build on loopback and prints a table
# (docs/benchmarks.md shows the results and explains each column).
#
#   bench/run.sh [BUILD_DIR]            default build/bench, made with:
#     cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
#       -DBUILD_TESTING=OFF && cmake --build build/bench -j2 \
#       --target twostep-webhook twostep-enroll twostep-loadgen twostep-poco-floor
#
# Scenarios (SCENARIOS, default "floor healthz exempt wrong valid replay mutate crowd idle"):
#   floor    GET /healthz on twostep-poco-floor: POCO's HTTPServer, a thread per connection, the
#            floor the event-driven front end replaced (issue 11), built in the same run
#   healthz  GET /healthz on the webhook
#   exempt wrong valid replay mutate   reviews on the webhook (docs/benchmarks.md, scenarios)
#   crowd    exempt with 64 and 256 connections, beyond the old thread pool
#   idle     IDLE (2000) idle keep-alive connections: server RSS per idle connection, a new and
#            the oldest idle connection timed
#   idle10k  the same with 10,000 idle connections (the server raises its open file limit; the
#            generator needs a hard limit of at least 10,300)
# COMPARE_BUILD=DIR also runs healthz and the review scenarios against DIR/src/twostep-webhook
# (e.g. a Release build of the commit before issue 11), each right after the same scenario on
# this build, as "NAME (compared)".
#
# Environment: DURATION (s, default 10), WARMUP (s, 1), CONNECTIONS (32), USERS (200000),
# SERVER_CPU (0), LOADGEN_CPU (1), IDLE (2000), SYNCHRONOUS (full, normal or durable-state: the
# database's PRAGMA synchronous, default the store's), SERVER_FLAGS (extra webhook flags), KEEP
# (1: keep the work dir), BOOST (1, as root: on a machine shared with other work, run the server
# and the generator as SCHED_FIFO priority 1 (`chrt -f 1`): a request/response benchmark is bound
# by how fast a woken thread gets its CPU, which `nice` does not shorten; the kernel's RT
# throttling still leaves 5% to everything else), PEER (1: after each of exempt, wrong, valid and
# replay, the same load against the Node.js peer webhook of ../shared/peers/node-webhook,
# PEER_SRC, installed once with `npm ci` into BUILD_DIR/peer, and a ratio per scenario; 0:
# twostep only). Each scenario runs against a fresh copy of one database of USERS enrolled users
# (uN with secret base32(sha1("uN")), the peer's users, so both servers get the same requests),
# with the server pinned to SERVER_CPU (so the webhook runs one event loop) and the generator to
# LOADGEN_CPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench}
webhook=$build/src/twostep-webhook
enroll=$build/enroll/twostep-enroll
loadgen=$build/bench/twostep-loadgen
floor=$build/bench/twostep-poco-floor
for binary in "$webhook" "$enroll" "$loadgen" "$floor"; do
  [[ -x $binary ]] || { echo "missing $binary: build it first (see the top of $0)" >&2; exit 1; }
done
duration=${DURATION:-10}
warmup=${WARMUP:-1}
connections=${CONNECTIONS:-32}
users=${USERS:-200000}
peer=${PEER:-1}
peer_src=${PEER_SRC:-$root/../shared/peers/node-webhook}
peer_dir=$build/peer
server_cpu=${SERVER_CPU:-0}
loadgen_cpu=${LOADGEN_CPU:-1}
scenarios=${SCENARIOS:-floor healthz exempt wrong valid replay mutate crowd idle}
idle=${IDLE:-2000}
read -r -a server_flags <<<"${SERVER_FLAGS:-}"
# STORE=postgresql: the webhook on POSTGRES_URL (default TWOSTEP_TEST_POSTGRES_URL, which
# scripts/with-postgres.sh sets: `scripts/with-postgres.sh env STORE=postgresql bench/run.sh`);
# the users are imported once, and each scenario starts from their state reset and an empty
# audit log.
store=${STORE:-sqlite}
pg_url=${POSTGRES_URL:-${TWOSTEP_TEST_POSTGRES_URL:-}}
if [[ $store == postgresql && -z $pg_url ]]; then
  echo "STORE=postgresql needs POSTGRES_URL (or run under scripts/with-postgres.sh)" >&2
  exit 2
fi
db_url() {
  if [[ $store == postgresql ]]; then echo "$pg_url"; return; fi
  echo "sqlite:$work/db/twostep.db${SYNCHRONOUS:+?synchronous=$SYNCHRONOUS}"
}
template_url() {
  if [[ $store == postgresql ]]; then echo "$pg_url"; else echo "$work/template/twostep.db"; fi
}
body=$root/bench/review-4.6k.json

work=$(mktemp -d "${TMPDIR:-/tmp}/twostep-bench.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# shellcheck source-path=SCRIPTDIR source=pki.sh
source "$root/bench/pki.sh"
make_pki "$work"

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); kernel $(uname -r)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); store: $store; synchronous: ${SYNCHRONOUS:-default}; boost: ${BOOST:-0}"
echo "enrolling $users users (twostep-enroll import)..."
"$enroll" --db "$(template_url)" --master-key-file "$work/master.key" init >/dev/null
# The peer's users: uN with the secret base32(sha1("uN")) (its enroll.js).
python3 -c '
import base64, hashlib, sys
for i in range(int(sys.argv[1])):
    name = "u%d" % i
    print(name + "," + base64.b32encode(hashlib.sha1(name.encode()).digest()).decode())
' "$users" >"$work/users.csv"
if [[ $peer == 1 ]]; then
  for tool in node npm; do
    command -v "$tool" >/dev/null ||
      { echo "PEER=1 needs $tool (apt-get install -y nodejs npm), or run with PEER=0" >&2; exit 2; }
  done
  [[ -f $peer_src/server.js ]] || { echo "no peer at $peer_src (set PEER_SRC, or PEER=0)" >&2; exit 2; }
  if [[ ! -d $peer_dir/node_modules ]]; then
    echo "installing the peer into $peer_dir (npm ci; better-sqlite3 builds from source)..."
    rm -rf "$peer_dir" && mkdir -p "$peer_dir" && cp -r "$peer_src/." "$peer_dir/"
    chmod -R u+w "$peer_dir"
    (cd "$peer_dir" && npm ci --silent)
  fi
  mkdir -p "$work/peer-template"
  echo "peer: node $(node --version); $(node "$peer_dir/enroll.js" "$users" --db "$work/peer-template/peer.db")"
fi
start=$(date +%s%N)
"$enroll" --db "$(template_url)" --master-key-file "$work/master.key" \
  import "$work/users.csv" >/dev/null
echo "import took $(( ($(date +%s%N) - start) / 1000000 )) ms"

# start_server [FLAGS...]: a fresh copy of the template database, the server pinned to
# SERVER_CPU; sets server_pid, server_port, ready_ms. With server_kind=floor: the floor binary.
server_kind=webhook
start_server() {
  if [[ $store == postgresql ]]; then
    psql -q "$pg_url" -c "UPDATE users SET last_step = NULL, failures = 0, lockouts = 0,
      locked_until = NULL, grant_until = NULL" -c "TRUNCATE audit_events" -c "VACUUM ANALYZE"
  else
    rm -rf "$work/db"
    cp -r "$work/template" "$work/db"
  fi
  local line command
  local binary=$webhook
  [[ $server_kind == compared ]] && binary=$COMPARE_BUILD/src/twostep-webhook
  if [[ $server_kind == floor ]]; then
    command=("$floor" --listen=127.0.0.1:0 --tls-cert="$work/server.pem" --tls-key="$work/server.key" "$@")
  else
    command=("$binary" --listen=127.0.0.1:0 --tls-cert="$work/server.pem" --tls-key="$work/server.key" \
      --db="$(db_url)" --master-key-file="$work/master.key" "${server_flags[@]}" "$@")
  fi
  line=$("${boost[@]}" "$loadgen" startup --log "$work/server.log" --ca "$work/ca.pem" --cpu "$server_cpu" -- \
    "${command[@]}")
  server_pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
  server_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$line")
  ready_ms=$(sed -n 's/.*ready_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  [[ $server_kind != webhook ]] || ready_all+=("$ready_ms")
}
stop_server() {
  kill -TERM "$server_pid"
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  server_pid=""
}
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
# The command prefix that runs a process as SCHED_FIFO when BOOST=1.
boost=()
if [[ ${BOOST:-0} == 1 ]]; then boost=(chrt -f 1); fi

# start_peer: the Node.js peer on a fresh copy of its database, pinned to SERVER_CPU; sets
# server_pid, server_port once it answers.
start_peer() {
  rm -rf "$work/peerdb"
  cp -r "$work/peer-template" "$work/peerdb"
  server_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  DB=$work/peerdb/peer.db PORT=$server_port TLS_CERT=$work/server.pem TLS_KEY=$work/server.key \
    "${boost[@]}" taskset -c "$server_cpu" node "$peer_dir/server.js" >"$work/peer.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" \
      "https://127.0.0.1:$server_port/validate") != 000 ]] && return 0
    sleep 0.1
  done
  echo "the peer did not start; see $work/peer.log" >&2
  exit 1
}

# measure NAME SCENARIO CONNECTIONS [LOADGEN FLAGS...]: the load against the running server
# (server_pid, server_port), one row of the table.
ready_all=()
rows=()
declare -A rps_of cpu_of
measure() {
  local name=$1 scenario=$2 conns=$3
  shift 3
  local result rc=0
  result=$("${boost[@]}" taskset -c "$loadgen_cpu" "$loadgen" run --port "$server_port" \
    --ca "$work/ca.pem" --scenario "$scenario" --body "$body" --users "$work/users.csv" \
    --connections "$conns" --warmup "$warmup" --duration "$duration" \
    --server-pid "$server_pid" --response-timeout-ms 5000 "$@" 2>"$work/loadgen.err") || rc=$?
  echo "$result" >>"$work/results.txt"
  ms() { awk -v us="$(field "$1" "$result")" 'BEGIN {printf "%.2f", us / 1000}'; }
  rows+=("$(printf '%-22s %5s %8s %7s %7s %7s %8s %6s %7s %7s  %s' "$name" "$conns" \
    "$(field rps "$result")" "$(ms p50_us)" "$(ms p90_us)" "$(ms p99_us)" "$(ms p999_us)" \
    "$(field server_cpu "$result")" \
    "$(awk -v kb="$(field server_hwm_kb "$result")" 'BEGIN {printf "%.1f", kb / 1024}')" \
    "$(field loadgen_cpu "$result")" \
    "$(field reasons "$result") unexpected=$(field unexpected "$result") never_answered=$(field never_answered "$result")$([[ $rc -ne 0 ]] && echo " EXIT=$rc")")")
  echo "  $name: $(field rps "$result") req/s" >&2
  rps_of[$name]=$(field rps "$result")
  cpu_of[$name]=$(field server_cpu "$result")
}

# idle_run NAME COUNT [SERVER FLAGS...]: COUNT idle keep-alive connections against the webhook.
idle_rows=()
idle_run() {
  local name=$1 count=$2 result rc=0
  shift 2
  start_server "$@"
  result=$("${boost[@]}" taskset -c "$loadgen_cpu" "$loadgen" idle --port "$server_port" \
    --ca "$work/ca.pem" --connections "$count" --server-pid "$server_pid" --rounds 5 \
    2>"$work/loadgen.err") || rc=$?
  stop_server
  echo "$result" >>"$work/results.txt"
  idle_rows+=("$(printf '%-10s %7s %7s %9s %9s %9s %8s %8s %s' "$name" "$count" \
    "$(field opened "$result")" "$(field per_idle_kb "$result")" \
    "$(awk -v kb="$(field server_rss_after_kb "$result")" 'BEGIN {printf "%.1f", kb / 1024}')" \
    "$(field setup_s "$result")" "$(field new_max_ms "$result")" "$(field oldest_max_ms "$result")" \
    "all_answered=$(field all_answered "$result")$([[ $rc -ne 0 ]] && echo " EXIT=$rc")")")
  echo "  $name: $(field per_idle_kb "$result") KiB per idle connection, new connection" \
    "$(field new_max_ms "$result") ms" >&2
}

# run NAME SCENARIO CONNECTIONS [SERVER FLAGS...]
run() {
  local name=$1 scenario=$2 conns=$3
  shift 3
  start_server "$@"
  measure "$name" "$scenario" "$conns"
  stop_server
}

# run_peer SCENARIO: the same load against the peer.
run_peer() {
  start_peer
  measure "peer $1" "$1" "$connections" --server peer
  stop_server
}

for scenario in $scenarios; do
  case $scenario in
    floor) server_kind=floor; run "floor (POCO healthz)" healthz "$connections"; server_kind=webhook ;;
    healthz | exempt | wrong | valid | replay | mutate)
      run "$scenario" "$scenario" "$connections"
      if [[ -n ${COMPARE_BUILD:-} ]]; then
        server_kind=compared; run "$scenario (compared)" "$scenario" "$connections"; server_kind=webhook
      fi
      if [[ $peer == 1 && $scenario =~ ^(exempt|wrong|valid|replay)$ ]]; then run_peer "$scenario"; fi
      ;;
    crowd)
      # Beyond the old thread pool, which gave each keep-alive connection a worker thread.
      run "exempt, 64 conns" exempt 64
      run "exempt, 256 conns" exempt 256
      ;;
    idle) idle_run idle "$idle" ;;
    # Room for the warm-up connection and the new ones next to the 10,000 idle.
    idle10k) idle_run idle10k 10000 --max-connections=10100 ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %5s %8s %7s %7s %7s %8s %6s %7s %7s  %s\n' scenario conns req/s p50ms p90ms \
  p99ms p99.9ms srvCPU HWM_MB genCPU answers
printf '%s\n' "${rows[@]}"
# Per server core: req/s divided by the share of its core the server used.
per_core() { awk -v r="${rps_of[$1]}" -v c="${cpu_of[$1]}" 'BEGIN {printf "%.0f", (c > 0 ? r / c : 0)}'; }
floor_name="floor (POCO healthz)"
if [[ -n ${rps_of["$floor_name"]:-} ]]; then
  for name in healthz exempt "exempt (compared)" "healthz (compared)"; do
    [[ -n ${rps_of[$name]:-} ]] || continue
    echo "$name / floor, per server core: $(per_core "$name") / $(per_core "$floor_name") =" \
      "$(awk -v a="$(per_core "$name")" -v b="$(per_core "$floor_name")" 'BEGIN {printf "%.2f", a / b}')" \
      "(raw req/s: $(awk -v a="${rps_of[$name]}" -v b="${rps_of["$floor_name"]}" 'BEGIN {printf "%.2f", a / b}'))"
  done
fi
if [[ ${#idle_rows[@]} -gt 0 ]]; then
  printf '%-10s %7s %7s %9s %9s %9s %8s %8s\n' idle conns opened KiB/conn RSS_MB setup_s \
    new_ms old_ms
  printf '%s\n' "${idle_rows[@]}"
fi
if [[ $peer == 1 ]]; then
  echo "twostep / peer, req/s per server core in this run:"
  for scenario in exempt wrong valid replay; do
    [[ -n ${rps_of[$scenario]:-} && -n ${rps_of[peer $scenario]:-} ]] || continue
    awk -v a="$(per_core "$scenario")" -v b="$(per_core "peer $scenario")" -v s="$scenario" \
      -v ra="${rps_of[$scenario]}" -v rb="${rps_of[peer $scenario]}" \
      'BEGIN { if (b > 0 && rb > 0) printf "  %-8s %8d / %8d = %.2fx (raw req/s %.2fx)\n", s, a, b, a / b, ra / rb }'
  done
fi
sorted=$(printf '%s\n' "${ready_all[@]}" | sort -n)
echo "start-up to ready (exec to first 200 on /readyz), ms: min $(head -1 <<<"$sorted")," \
  "median $(sed -n "$(( (${#ready_all[@]} + 1) / 2 ))p" <<<"$sorted"), max $(tail -1 <<<"$sorted")" \
  "over ${#ready_all[@]} starts"
