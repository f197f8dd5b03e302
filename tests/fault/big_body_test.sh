#!/usr/bin/env bash
# A 10 MB body is refused with 413 before it is read (Content-Length) or as soon as the limit is
# passed (chunked), quickly, and the server keeps serving.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

make_db "$work/db" 10
start_server
head -c 10485760 /dev/zero | tr '\0' ' ' >"$work/big.json"

elapsed() { local start=$1; echo $(( ($(date +%s%N) - start) / 1000000 )); }

start=$(date +%s%N)
answer=$(post /validate "$work/big.json")
ms=$(elapsed "$start")
note "10 MB with Content-Length: ${answer:0:60} in $ms ms"
[[ ${answer%% *} == 413 ]] || fail "10 MB body (Content-Length) answered ${answer:0:80}"
(( ms < 3000 )) || fail "the 413 took $ms ms"

start=$(date +%s%N)
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$work/ca.pem" \
  -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
  --data-binary "@$work/big.json" "https://127.0.0.1:$server_port/mutate" || true)
ms=$(elapsed "$start")
note "10 MB chunked: $status in $ms ms"
[[ $status == 413 ]] || fail "10 MB chunked body answered $status"
(( ms < 5000 )) || fail "the chunked 413 took $ms ms"

# Ten at once, then the server still answers a normal request.
for _ in $(seq 10); do post /validate "$work/big.json" >/dev/null & done
wait
review system:serviceaccount:a:b 000000 >"$work/ok.json"
answer=$(post /validate "$work/ok.json")
[[ $answer == 200\ *'"allowed":true'* ]] || fail "after the big bodies: ${answer:0:120}"
server_alive || fail "the webhook died"
[[ $(https_status /readyz) == 200 ]] || fail "/readyz after the big bodies"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
note "peak RSS after 12 big bodies: $rss kB"
(( rss < 100000 )) || fail "peak RSS $rss kB: a big body was buffered"
stop_server
note "ok"
