#!/usr/bin/env bash
# Slow clients (slowloris) against --read-timeout 1s and --header-timeout 2s: clients that stall
# after their request line are cut after the read timeout, clients that trickle a header byte
# every 0.5 s (never silent for a whole read timeout) after the header timeout. Connections live
# on event loops, so however many there are, a normal client is served at once meanwhile, is
# never allowed by accident, and each cut is logged and counted.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
slow() { python3 "$(dirname "$0")/slow_clients.py" "$server_port" "$work/ca.pem" "$@"; }

make_db "$work/db" 10
start_server --threads=8 --read-timeout=1s --header-timeout=2s
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

# Stalled clients: a normal client is served at once, and they are cut after the read timeout.
slow 12 stall 4 >"$work/stall.out" &
sleep 0.5
expect_denied "$(timed_post)" "12 stalled clients" 1500
wait
note "12 stalled clients: $(cat "$work/stall.out")"
grep -q 'closed=12/12' "$work/stall.out" || fail "stalled clients were not cut: $(cat "$work/stall.out")"
max=$(sed -n 's/.*max_s=\([0-9.]*\).*/\1/p' "$work/stall.out")
awk "BEGIN {exit !($max <= 2.5)}" || fail "stalled clients were cut only after $max s (read timeout 1 s)"

# Many more trickling clients than --threads, each willing to go on for 6 s: none waits for a
# thread, each is cut within the header timeout (2 s, checked every 0.1 s) of its connection,
# and the normal client is served at once meanwhile.
slow 100 trickle 6 >"$work/trickle.out" &
sleep 1
expect_denied "$(timed_post)" "100 trickling clients" 1500
wait
note "100 trickling clients: $(cat "$work/trickle.out")"
grep -q 'closed=100/100' "$work/trickle.out" || fail "trickling clients were not cut: $(cat "$work/trickle.out")"
max=$(sed -n 's/.*max_s=\([0-9.]*\).*/\1/p' "$work/trickle.out")
awk "BEGIN {exit !($max <= 3.5)}" || fail "trickling clients were cut only after $max s (header timeout 2 s)"
cuts=$(grep -c 'connection cut: no complete request headers' "$work/server.log" || true)
(( cuts >= 112 )) || fail "expected 112 cuts in the log, found $cuts"
counted=$(curl -s --max-time 5 --cacert "$work/ca.pem" "https://127.0.0.1:$server_port/metrics" |
  sed -n 's/^twostep_connections_cut_total \([0-9.e+]*\)$/\1/p')
awk "BEGIN {exit !(${counted:-0} >= 112)}" || fail "twostep_connections_cut_total is '${counted}', expected 112 or more"
note "cut connections: $cuts logged, $counted counted"
expect_denied "$(timed_post)" "after the slow clients were cut" 1500
server_alive || fail "the webhook died"
stop_server
note "ok"
