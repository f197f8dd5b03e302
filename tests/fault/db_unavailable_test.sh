#!/usr/bin/env bash
# The database goes away while the webhook runs (its directory renamed, the file deleted, the
# file replaced by garbage): every protected request is denied (fail closed), /readyz fails, no
# empty database is created in its place, and service comes back when the file does.
# (Permission bits are not a test of this: a running process keeps the files it has open, and
# the webhook runs as root here, which bypasses them anyway.)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

make_db "$work/db" 20
start_server

# expect_decision USER CODE ALLOWED REASON
expect_decision() {
  review "$1" "$2" >"$work/review.json"
  local answer
  answer=$(post /validate "$work/review.json")
  [[ $answer == 200\ * ]] || fail "$1: HTTP ${answer:0:100}"
  [[ $answer == *"\"allowed\":$3"* && $answer == *"\"reason\":\"$4\""* ]] ||
    fail "$1: expected allowed=$3 reason=$4, got ${answer:4:200}"
}

# wait_ready STATUS: /readyz answers STATUS within 5 s.
wait_ready() {
  for _ in $(seq 50); do
    [[ $(https_status /readyz) == "$1" ]] && return 0
    sleep 0.1
  done
  fail "/readyz did not answer $1 within 5 s (last: $(https_status /readyz))"
}

# outage NAME: checks the webhook while the database is unavailable.
outage() {
  note "$1"
  wait_ready 503
  expect_decision "$2" "$(code_of "$2")" false internal_error
  expect_decision system:serviceaccount:shop:deployer 000000 true exempt  # needs no database
  server_alive || fail "$1: the webhook died"
}

first_code=$(code_of bench-user-000000)
expect_decision bench-user-000000 "$first_code" true verified

mv "$work/db" "$work/db.away"
outage "database directory renamed away" bench-user-000001
[[ ! -e $work/db ]] || fail "the webhook created the database directory again"
mv "$work/db.away" "$work/db"
wait_ready 200
expect_decision bench-user-000001 "$(code_of bench-user-000001)" true verified
# What was stored before the outage is still there: the first code is now a replay.
expect_decision bench-user-000000 "$first_code" false replayed

sqlite3 "$db" ".backup '$work/backup.db'"
rm -f "$db" "$db-wal" "$db-shm"
outage "database file deleted" bench-user-000002
[[ ! -e $db ]] || fail "the webhook created an empty database in place of the deleted one"
cp "$work/backup.db" "$db"
wait_ready 200
expect_decision bench-user-000002 "$(code_of bench-user-000002)" true verified

head -c 65536 /dev/urandom >"$work/garbage"
sqlite3 "$db" ".backup '$work/good.db'"
mv "$work/garbage" "$db"
rm -f "$db-wal" "$db-shm"
outage "database file replaced by garbage" bench-user-000003
mv "$work/good.db" "$db"
wait_ready 200
expect_decision bench-user-000003 "$(code_of bench-user-000003)" true verified

grep -q 'deleted or replaced while the webhook had it open' "$work/server.log" ||
  fail "the server log does not say why requests failed"
stop_server
note "ok: denied while the database was gone, recovered each time it came back"
