#!/usr/bin/env bash
# kill -9 under load, then a restart: `PRAGMA integrity_check` is ok, no enrolled user is lost,
# every code the webhook accepted before the crash has its audit row and is refused after it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

make_db "$work/db" 10000
users_before=$(sqlite3 "$db" 'SELECT COUNT(*) FROM users')
start_server

# Valid codes of distinct users, each a write (the replay step and an audit row), for 4 s; the
# server dies after 1.5 s and the generator keeps trying to reconnect until its time is up.
loadgen valid 4 --connections 16 --accepted-log "$work/accepted.csv" \
  --response-timeout-ms 2000 >"$work/load.out" 2>&1 &
load=$!
sleep 1.5
kill -KILL "$server_pid"
note "killed the webhook (-9) under load"
wait "$load" || true
cat "$work/load.out"
accepted=$(wc -l <"$work/accepted.csv")
[[ $accepted -gt 50 ]] || fail "only $accepted codes were accepted before the crash"
note "$accepted codes were accepted before the crash"

integrity=$(sqlite3 "$db" 'PRAGMA integrity_check')
[[ $integrity == ok ]] || fail "integrity_check after kill -9: $integrity"
users_after=$(sqlite3 "$db" 'SELECT COUNT(*) FROM users')
[[ $users_after == "$users_before" ]] || fail "$users_before users before the crash, $users_after after"

# An answer went out only after both writes committed: each accepted code left its step and its
# audit row behind.
cut -d, -f1 "$work/accepted.csv" | sed "s/.*/'&'/" | paste -sd, >"$work/names"
stepped=$(sqlite3 "$db" "SELECT COUNT(*) FROM users WHERE last_step IS NOT NULL AND username IN ($(cat "$work/names"))")
[[ $stepped == "$accepted" ]] || fail "$accepted codes accepted, but only $stepped users have a last step"
audited=$(sqlite3 "$db" "SELECT COUNT(DISTINCT username) FROM audit_events WHERE reason = 'verified' AND username IN ($(cat "$work/names"))")
[[ $audited == "$accepted" ]] || fail "$accepted codes accepted, but only $audited have an audit row"

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
