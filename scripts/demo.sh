#!/usr/bin/env bash
# The README's quick start: installs what is missing, builds, and runs twostep-webhook on its
# embedded SQLite default with a short walk-through, then keeps serving until Ctrl-C.
#   1. twostep-enroll init: a database and a new master key under ./demo/
#   2. a TLS certificate for 127.0.0.1 (openssl)
#   3. twostep-enroll add alice: the otpauth:// URI and its QR code; confirm with a code computed
#      from that URI by oathtool (standing in for alice's authenticator app)
#   4. the webhook starts; a review without a code is denied, one with a fresh code allowed, and
#      the same code again is refused as a replay
# Usage: scripts/demo.sh [PORT]   (default 8443; the demo state lives in ./demo, delete it to start over)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8443}

scripts/install-deps.sh demo
cmake --preset release >/dev/null
cmake --build --preset release

enroll=build/release/enroll/twostep-enroll
webhook=build/release/src/twostep-webhook
demo=$PWD/demo
export TWOSTEP_DB=$demo/twostep.db TWOSTEP_MASTER_KEY_FILE=$demo/master.key
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$demo"
mkdir -p "$demo" && chmod 700 "$demo"

say "1. create the database and a master key (mode 0600)"
"$enroll" init

say "2. a self-signed TLS certificate for 127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=twostep-demo \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$demo/tls.key" -out "$demo/tls.crt" 2>/dev/null
echo "wrote $demo/tls.crt and $demo/tls.key"

say "3. enrol alice: scan the QR code with an authenticator app (or let oathtool stand in)"
"$enroll" add alice | tee "$demo/add.txt"
secret=$(sed -n 's/^otpauth:.*[?&]secret=\([A-Z2-7]*\).*/\1/p' "$demo/add.txt")
code=$(oathtool --totp -b "$secret")
echo "\$ twostep-enroll confirm alice <code from the app>"
"$enroll" confirm alice "$code"

say "4. start twostep-webhook on https://127.0.0.1:$port"
"$webhook" --listen "127.0.0.1:$port" --tls-cert "$demo/tls.crt" --tls-key "$demo/tls.key" \
  --log-format text &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
trap 'exit 0' INT TERM
for _ in $(seq 50); do
  curl -sf --cacert "$demo/tls.crt" "https://127.0.0.1:$port/readyz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "twostep-webhook did not start" >&2; exit 1; }
  sleep 0.1
done

review() {  # POST a fixture to /validate, with the token annotation's value replaced by $2
  sed "s/\"twostep.dev\/token\": *\"[^\"]*\"/\"twostep.dev\/token\": \"$2\"/" "tests/data/$1" |
    curl -s --cacert "$demo/tls.crt" -H 'Content-Type: application/json' --data-binary @- \
      "https://127.0.0.1:$port/validate?timeout=5s"
  echo
}

say "a Deployment CREATE by alice without a code: denied"
review 0001-CREATE-deployments-demo-denied.json ""

# The confirm above used the current time step; a code must come from a newer step, and the
# window (±1 step) accepts the next one, so take the code of 30 s from now.
next=$(oathtool --totp -b "$secret" -N "now + 30 seconds")
say "the same with a fresh code from alice's app: allowed"
review 0004-CREATE-deployments-demo-ok.json "$next"

say "that code once more: refused as a replay"
review 0004-CREATE-deployments-demo-ok.json "$next"

say "the audit log"
"$enroll" audit --limit 5

say "twostep-webhook keeps serving on https://127.0.0.1:$port (Ctrl-C stops it)"
echo "try: curl --cacert demo/tls.crt https://127.0.0.1:$port/metrics"
wait "$server"
