#!/usr/bin/env bash
# Slow clients (slowloris) against a small pool (--threads 8, --read-timeout 1s): clients that
# stall are cut after the read timeout and free their thread, a normal client is served meanwhile
# or right after; clients that trickle a byte at a time hold their threads (POCO has no deadline
# for a whole request header, docs/benchmarks.md), yet nothing is allowed by accident and service
# resumes the moment they go.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
slow() { python3 "$(dirname "$0")/slow_clients.py" "$server_port" "$work/ca.pem" "$@"; }

make_db "$work/db" 10
start_server --threads=8 --queue=8 --read-timeout=1s
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

# Trickling clients holding every thread: the normal client is not served while they last
# (the documented limitation); it is never allowed, and it is served as soon as they leave.
slow 12 trickle 3 >"$work/trickle.out" &
sleep 1
starved=$(timed_post 1.5)
note "12 trickling clients, 8 threads: ${starved:0:60}"
[[ $starved != *'"allowed":true'* ]] || fail "allowed while starved"
wait
note "12 trickling clients: $(cat "$work/trickle.out")"
expect_denied "$(timed_post)" "after the trickling clients left" 2500
server_alive || fail "the webhook died"
stop_server
note "ok"
