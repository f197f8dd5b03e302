#!/usr/bin/env bash
# Brute force: wrong codes for one user as fast as 32 connections can send them, for
# BRUTE_SECONDS (default 10). The lockout bounds how many guesses get an answer that tells
# anything: the audit log must show exactly 5 answered "wrong" (wrong_code) before the first lock,
# and every later guess answered "locked out" (locked_out), including the ones already in flight
# when the lock began (the store refuses to count or accept while a lock is on).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
seconds=${BRUTE_SECONDS:-10}
connections=32

make_db "$work/db" 1
start_server  # default lockout: 5 failures, 1 min, doubling up to 1 h
victim=bench-user-000000
set +e
result=$(loadgen locked "$seconds" --connections "$connections")
rc=$?
set -e
echo "$result"
[[ $rc -ne 3 ]] || fail "a wrong code was allowed"
[[ $rc -eq 0 ]] || fail "unexpected answers (exit $rc)"
answers=$(field answers "$result")
checked=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_events WHERE username = '$victim' AND reason = 'wrong_code'")
refused=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_events WHERE username = '$victim' AND reason = 'locked_out'")
IFS='|' read -r lockouts failures <<<"$(sqlite3 "$db" "SELECT lockouts, failures FROM users WHERE username = '$victim'")"
note "$answers guesses in ${seconds}s ($(field rps "$result")/s): $checked answered wrong (wrong_code), $refused answered locked out (locked_out); $lockouts lockouts, $failures failures since"
(( answers > 1000 )) || fail "only $answers guesses were answered: not a brute-force rate"
# Every guess is audited; the ones still in flight when the generator stopped are audited too.
(( checked + refused >= answers && checked + refused <= answers + connections )) ||
  fail "$answers answers but $((checked + refused)) audit rows"
# Every checked guess was counted: 5 per lockout, plus the streak after the last one.
(( checked == 5 * lockouts + failures )) || fail "$checked checked guesses, but $lockouts lockouts and $failures failures"
# The first lock lasts 60 s: a shorter run ends inside it.
(( seconds >= 60 || checked == 5 )) ||
  fail "$checked guesses were answered wrong_code, not 5: guesses in flight slipped past the lock"
(( refused > answers / 2 )) || fail "only $refused of $answers guesses were refused by the lockout"
stop_server
note "ok: the lockout let $checked of $answers guesses be answered"
