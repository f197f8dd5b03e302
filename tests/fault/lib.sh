# shellcheck shell=bash
# Shared helpers of the fault tests (sourced). Each test gets: a private temp dir with a test CA
# and server certificate (openssl CLI), a database and master key made by the real
# twostep-enroll, the real twostep-webhook on 127.0.0.1 port 0, and twostep-loadgen.
# Arguments of every test script: WEBHOOK ENROLL LOADGEN SOURCE_ROOT.
set -euo pipefail

WEBHOOK=$1
ENROLL=$2
LOADGEN=$3
ROOT=$4
BODY_TEMPLATE=$ROOT/bench/review-4.6k.json
# shellcheck source-path=SCRIPTDIR source=../../bench/pki.sh
source "$ROOT/bench/pki.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/twostep-fault.XXXXXX")
server_pid=""
server_port=""
cleanup_hooks=()

cleanup() {
  local hook
  for hook in "${cleanup_hooks[@]}"; do
    eval "$hook" || true
  done
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [[ -f $work/server.log ]]; then
    echo "--- last server log lines:" >&2
    tail -n 20 "$work/server.log" >&2 || true
  fi
  exit 1
}

note() { echo "# $*"; }

# make_db DIR COUNT: a database in DIR with COUNT active users bench-user-NNNNNN, whose secrets
# are in $work/users.csv.
make_db() {
  db_dir=$1
  db=$db_dir/twostep.db
  key=$work/master.key
  mkdir -p "$db_dir"
  "$ENROLL" --db "$db" --master-key-file "$key" init >/dev/null
  "$LOADGEN" users --count "$2" --out "$work/users.csv"
  "$ENROLL" --db "$db" --master-key-file "$key" import "$work/users.csv" >/dev/null
}

# start_server [FLAGS...]: starts the webhook on $db and waits for /readyz (sets server_pid,
# server_port).
start_server() {
  local line
  line=$("$LOADGEN" startup --log "$work/server.log" --ca "$work/ca.pem" --timeout 20 -- \
    "$WEBHOOK" --listen=127.0.0.1:0 --tls-cert="$work/server.pem" --tls-key="$work/server.key" \
    --db="$db" --master-key-file="$key" --log-format=text "$@") || fail "the webhook did not start"
  server_pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
  server_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$line")
  note "webhook pid $server_pid on port $server_port ($(field ready_ms "$line") ms to ready)"
}

# stop_server: SIGTERM, then waits for the process to go: at most 25 s, since a graceful stop
# lets requests in flight finish, which the server bounds at 2 x --read-timeout + 2 s (22 s).
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 250); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      server_pid=""
      # In the asan build a sanitizer report goes to stderr, which is this log.
      if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/server.log"; then
        fail "the sanitizers reported an error (see the server log above)"
      fi
      return 0
    fi
    sleep 0.1
  done
  fail "the webhook did not stop within 25 s of SIGTERM"
}

server_alive() { kill -0 "$server_pid" 2>/dev/null; }

# https_status PATH: the HTTP status of GET PATH (000 when there is no answer).
https_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-5}" --cacert "$work/ca.pem" \
    "https://127.0.0.1:$server_port$1" || true
}

# review USER CODE: the benchmark review for USER with CODE, on stdout.
review() {
  sed -e "s/@USER@/$1/" -e "s/@CODE@/$2/g" -e "s/@UID@/fault-$RANDOM$RANDOM/" "$BODY_TEMPLATE"
}

# post PATH FILE: POSTs FILE; prints "STATUS BODY" (STATUS 000 when there is no answer).
post() {
  local out=$work/post.out status
  rm -f "$out"
  status=$(curl -s -o "$out" -w '%{http_code}' --max-time "${3:-10}" --cacert "$work/ca.pem" \
    -H 'Content-Type: application/json' --data-binary "@$2" \
    "https://127.0.0.1:$server_port$1") || true
  echo "$status $(cat "$out" 2>/dev/null)"
}

# secret_of USER: the base32 secret from users.csv; code_of USER: its current TOTP code.
secret_of() { sed -n "s/^$1,//p" "$work/users.csv"; }
code_of() { oathtool --totp -b "$(secret_of "$1")"; }

# loadgen SCENARIO SECONDS [FLAGS...]: runs twostep-loadgen against the server; prints its result
# line; returns its exit code (0 as expected, 2 unexpected answers, 3 an unexpected allow).
loadgen() {
  local scenario=$1 seconds=$2
  shift 2
  "$LOADGEN" run --port "$server_port" --ca "$work/ca.pem" --scenario "$scenario" \
    --body "$BODY_TEMPLATE" --users "$work/users.csv" --warmup 0 --duration "$seconds" "$@"
}

# field NAME LINE: the value of NAME=... in a loadgen result line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }

make_pki "$work"
