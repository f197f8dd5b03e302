#!/usr/bin/env bash
# Deeply nested JSON, in the body and inside last-applied-configuration (which /mutate parses
# again to rewrite): a 400 or a plain allow, quickly, never a crash or a hang.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

make_db "$work/db" 10
start_server
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
depth = 100000
open(f"{work}/arrays.json", "w").write("[" * depth + "]" * depth)
open(f"{work}/objects.json", "w").write('{"a":' * depth + "1" + "}" * depth)
PY
[[ -s $work/arrays.json ]] || fail "no test input"
for name in arrays objects; do
  for path in /validate /mutate; do
    start=$(date +%s%N)
    answer=$(post $path "$work/$name.json")
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    note "$name nested 100000 deep on $path: ${answer:0:90} ($ms ms)"
    [[ ${answer%% *} == 400 ]] || fail "$name nested on $path answered ${answer:0:100}"
    (( ms < 2000 )) || fail "$name nested took $ms ms"
  done
done

# Deep nesting inside a valid review: in the object (parsed by simdjson, depth-bounded) and in
# last-applied-configuration (a string, parsed again by /mutate on an allow).
sed -e 's/@USER@/system:serviceaccount:shop:deployer/' -e 's/@CODE@/000000/g' -e 's/@UID@/deep-1/' \
  "$BODY_TEMPLATE" | python3 -c '
import json, sys
review = json.load(sys.stdin)
depth = int(sys.argv[1])
annotations = review["request"]["object"]["metadata"]["annotations"]
key = "kubectl.kubernetes.io/last-applied-configuration"
annotations[key] = "{\"metadata\":{\"annotations\":{\"twostep.dev/token\":\"1\"}},\"x\":" + "[" * depth + "]" * depth + "}"
sys.stdout.write(json.dumps(review))
' 100000 >"$work/deep-last-applied.json"
answer=$(post /mutate "$work/deep-last-applied.json")
note "exempt review, last-applied nested 100000 deep, /mutate: ${answer:0:90}"
[[ $answer == 200\ *'"allowed":true'* ]] || fail "deep last-applied: ${answer:0:120}"
# The token annotation is still removed; the over-deep last-applied is left alone.
patch=$(sed -n 's/.*"patch":"\([^"]*\)".*/\1/p' <<<"$answer" | base64 -d)
[[ $patch == '[{"op":"remove","path":"/metadata/annotations/twostep.dev~1token"}]' ]] ||
  fail "patch for the deep last-applied: ${patch:0:200}"

sed -e 's/@USER@/system:serviceaccount:shop:deployer/' -e 's/@CODE@/000000/g' -e 's/@UID@/deep-2/' \
  "$BODY_TEMPLATE" | python3 -c '
import json, sys
text = sys.stdin.read()
depth = int(sys.argv[1])
# 600 levels below the object: deeper than the 512 the parser allows.
text = text.replace("\"spec\":{", "\"spec\":{\"deep\":" + "[" * depth + "]" * depth + ",", 1)
sys.stdout.write(text)
' 600 >"$work/deep-object.json"
answer=$(post /validate "$work/deep-object.json")
note "review with an object 600 levels deep: ${answer:0:90}"
[[ ${answer%% *} == 400 ]] || fail "a 600-deep object answered ${answer:0:100}"

server_alive || fail "the webhook died"
[[ $(https_status /readyz) == 200 ]] || fail "/readyz after the nested bodies"
stop_server
note "ok"
