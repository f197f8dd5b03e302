#!/usr/bin/env bash
# 1,000 concurrent keep-alive connections, each with a wrong code (a database write) in flight:
# every connection is served (connections live on event loops; --threads 32 workers only bound
# the database work), nothing is allowed by accident, the threads stay bounded, and the server
# serves normally once the crowd leaves.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -n 8192  # the generator and the server each hold 1,000 sockets

make_db "$work/db" 5000
start_server
set +e
# Wrong codes (every answer must be a denial); a request unanswered for 3 s is given up and its
# connection opened again, as the API server's client would.
result=$(loadgen wrong 8 --connections 1000 --response-timeout-ms 3000 --reconnect-delay-ms 100)
rc=$?
set -e
echo "$result"
[[ $rc -ne 3 ]] || fail "a wrong code was allowed under 1,000 connections"
answers=$(field answers "$result")
(( answers > 1000 )) || fail "only $answers answers under 1,000 connections"
[[ $(field never_answered "$result") == 0 ]] || fail "connections were never answered: ${result}"
server_alive || fail "the webhook died under 1,000 connections"
note "$answers answers; $(field never_answered "$result") of 1000 connections never got one," \
  "$(field timeouts "$result") requests timed out, $(field closed_early "$result") closed early"

# The crowd is gone: a normal client is served again within the idle bookkeeping of the pool.
for _ in $(seq 100); do
  [[ $(https_status /readyz 2) == 200 ]] && break
  sleep 0.1
done
[[ $(https_status /readyz) == 200 ]] || fail "/readyz after the 1,000 connections"
review bench-user-000001 000000 >"$work/wrong.json"
answer=$(post /validate "$work/wrong.json")
[[ $answer == 200\ *'"allowed":false'* ]] || fail "after the crowd: ${answer:0:120}"
threads=$(awk '/Threads/ {print $2}' "/proc/$server_pid/status")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
note "server: $threads threads, peak RSS $rss kB"
(( threads < 64 )) || fail "$threads threads: threads grew with the connections"
stop_server
note "ok"
