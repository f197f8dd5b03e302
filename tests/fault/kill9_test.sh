#!/usr/bin/env bash
# kill -9 under load, in the middle of group commits, then a restart: `PRAGMA integrity_check` is
# ok, no enrolled user is lost, every code the webhook accepted before the crash has its audit row
# and is refused after it, and the store holds no step without its audit row and no audit row
# without its step (each batch committed whole or not at all).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# Enough users that the load cannot run out of fresh codes before the kill (each user once).
make_db "$work/db" "${KILL9_USERS:-60000}"
users_before=$(sqlite3 "$db" 'SELECT COUNT(*) FROM users')
# A thread beyond the load's 32 connections, for the /metrics request during the load.
start_server --threads=40

# Valid codes of distinct users, each a change (the replay step) with its audit row, from 32
# connections for 4 s; the server dies after 1.5 s and the generator keeps trying to reconnect
# until its time is up.
loadgen valid 4 --connections 32 --accepted-log "$work/accepted.csv" \
  --response-timeout-ms 2000 >"$work/load.out" 2>&1 &
load=$!
sleep 1.2
# The group commit is really batching under this load: more changes than store transactions.
metrics=$(curl -s --max-time 2 --cacert "$work/ca.pem" "https://127.0.0.1:$server_port/metrics" || true)
batches=$(sed -n 's/^twostep_store_batch_size_count \(.*\)/\1/p' <<<"$metrics")
changes=$(sed -n 's/^twostep_store_batch_size_sum \(.*\)/\1/p' <<<"$metrics")
sleep 0.3
kill -KILL "$server_pid"
note "killed the webhook (-9) under load"
wait "$load" || true
cat "$work/load.out"
grep -q 'exhausted=1' "$work/load.out" && fail "the load ran out of users before the kill"
[[ -n $batches && -n $changes ]] || fail "no twostep_store_batch_size in /metrics under load"
note "before the kill: $changes changes in $batches store transactions"
awk -v b="$batches" -v c="$changes" 'BEGIN { exit !(c > b) }' ||
  fail "no batch of more than one change formed ($changes changes in $batches transactions)"
accepted=$(wc -l <"$work/accepted.csv")
[[ $accepted -gt 50 ]] || fail "only $accepted codes were accepted before the crash"
note "$accepted codes were accepted before the crash"

integrity=$(sqlite3 "$db" 'PRAGMA integrity_check')
[[ $integrity == ok ]] || fail "integrity_check after kill -9: $integrity"
users_after=$(sqlite3 "$db" 'SELECT COUNT(*) FROM users')
[[ $users_after == "$users_before" ]] || fail "$users_before users before the crash, $users_after after"

# An answer went out only after its batch committed: each accepted code left its step and its
# audit row behind.
awk -F, '{ printf "INSERT INTO accepted VALUES ('"'"'%s'"'"');\n", $1 }' "$work/accepted.csv" >"$work/accepted.sql"
count_accepted() {
  { echo "CREATE TEMP TABLE accepted (name TEXT PRIMARY KEY);"; cat "$work/accepted.sql"; echo "$1"; } |
    sqlite3 "$db"
}
stepped=$(count_accepted "SELECT COUNT(*) FROM users WHERE last_step IS NOT NULL AND username IN (SELECT name FROM accepted);")
[[ $stepped == "$accepted" ]] || fail "$accepted codes accepted, but only $stepped users have a last step"
audited=$(count_accepted "SELECT COUNT(DISTINCT username) FROM audit_events WHERE reason = 'verified' AND username IN (SELECT name FROM accepted);")
[[ $audited == "$accepted" ]] || fail "$accepted codes accepted, but only $audited have an audit row"
# Every batch committed whole or not at all, the answered and the unanswered alike: a used step
# always has its audit row, and an audit row always its used step (each user's code was sent once).
all_stepped=$(sqlite3 "$db" 'SELECT COUNT(*) FROM users WHERE last_step IS NOT NULL')
all_audited=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_events WHERE reason = 'verified'")
orphans=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_events AS a JOIN users AS u USING (username) WHERE a.reason = 'verified' AND u.last_step IS NULL")
[[ $all_stepped == "$all_audited" && $orphans == 0 ]] ||
  fail "$all_stepped used steps, $all_audited verified audit rows, $orphans rows without their step"
note "$all_stepped steps committed (some never answered), each with its audit row"

start_server
set +e
result=$(loadgen recheck 30 --connections 8 --codes "$work/accepted.csv")
rc=$?
set -e
echo "$result"
[[ $rc -ne 3 ]] || fail "a code accepted before the crash was accepted again after the restart"
[[ $rc -eq 0 ]] || fail "unexpected answers when the accepted codes were sent again (exit $rc)"
[[ $(field answers "$result") == "$accepted" ]] || fail "not every accepted code was sent again"
stop_server
note "ok: database intact, $users_after users kept, $accepted accepted codes all refused after the restart"
