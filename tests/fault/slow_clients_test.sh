#!/usr/bin/env bash
# Slow clients (slowloris) against a small pool (--threads 8, --read-timeout 1s,
# --header-timeout 2s): clients that stall are cut after the read timeout and free their thread, a
# normal client is served meanwhile or right after; clients that trickle a header byte every 0.5 s
# (never idle for a whole read timeout) are cut by the watchdog after the header timeout, so a
# normal client waits at most about that long, is never allowed by accident, and each cut is
# logged and counted.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
slow() { python3 "$(dirname "$0")/slow_clients.py" "$server_port" "$work/ca.pem" "$@"; }

make_db "$work/db" 10
start_server --threads=8 --queue=8 --read-timeout=1s --header-timeout=2s
review bench-user-000001 000000 >"$work/wrong.json"

# timed_post: "MS STATUS BODY" of one wrong-code review (answered with a denial).
timed_post() {
  local start answer
  start=$(date +%s%N)
  answer=$(post /validate "$work/wrong.json" "${1:-10}")
  echo "$(( ($(date +%s%N) - start) / 1000000 )) $answer"
}
expect_denied() {
  local ms=${1%% *} rest=${1#* }
  [[ $rest == 200\ *'"allowed":false'* ]] || fail "$2: ${rest:0:120}"
  (( ms <= $3 )) || fail "$2: answered after $ms ms (limit $3 ms)"
  note "$2: denied in $ms ms"
}

# Fewer stalled clients than threads: a normal client is served at once.
slow 4 stall 4 >"$work/stall4.out" &
sleep 0.5
expect_denied "$(timed_post)" "4 stalled clients, 8 threads" 1500
wait
note "4 stalled clients: $(cat "$work/stall4.out")"
grep -q 'closed=4/4' "$work/stall4.out" || fail "stalled clients were not cut: $(cat "$work/stall4.out")"
max=$(sed -n 's/.*max_s=\([0-9.]*\).*/\1/p' "$work/stall4.out")
# POCO gives up after two reads of a read timeout each.
awk "BEGIN {exit !($max <= 3)}" || fail "stalled clients were cut only after $max s (read timeout 1 s)"

# More stalled clients than threads: the normal client waits in the queue (8 threads + 4 of
# the 8 queue places taken) for a thread, which the read timeout frees within about 2 s.
# (16 stalled clients would fill the queue too, and POCO then refuses the 17th outright.)
slow 12 stall 5 >"$work/stall16.out" &
sleep 0.5
expect_denied "$(timed_post)" "12 stalled clients, 8 threads" 4000
wait
note "12 stalled clients: $(cat "$work/stall16.out")"

# Trickling clients taking every thread (8 running, 4 queued), each willing to go on for 10 s:
# the watchdog cuts each within the header timeout (2 s, checked every 0.2 s) of its thread taking
# it, so the normal client, queued behind them, is served after about two rounds of cuts.
slow 12 trickle 10 >"$work/trickle.out" &
sleep 1
expect_denied "$(timed_post 10)" "12 trickling clients, 8 threads" 6000
wait
note "12 trickling clients: $(cat "$work/trickle.out")"
grep -q 'closed=12/12' "$work/trickle.out" || fail "trickling clients were not cut: $(cat "$work/trickle.out")"
max=$(sed -n 's/.*max_s=\([0-9.]*\).*/\1/p' "$work/trickle.out")
# The last 4 waited in the queue for a thread (up to 2.2 s), then had 2.2 s of their own.
awk "BEGIN {exit !($max <= 5.5)}" || fail "trickling clients were cut only after $max s (header timeout 2 s)"
cuts=$(grep -c 'connection cut: no complete request headers' "$work/server.log" || true)
(( cuts >= 12 )) || fail "expected 12 cuts in the log, found $cuts"
counted=$(curl -s --max-time 5 --cacert "$work/ca.pem" "https://127.0.0.1:$server_port/metrics" |
  sed -n 's/^twostep_connections_cut_total \([0-9.e+]*\)$/\1/p')
awk "BEGIN {exit !(${counted:-0} >= 12)}" || fail "twostep_connections_cut_total is '${counted}', expected 12 or more"
note "cut connections: $cuts logged, $counted counted"
expect_denied "$(timed_post)" "after the trickling clients were cut" 1500
server_alive || fail "the webhook died"
stop_server
note "ok"
