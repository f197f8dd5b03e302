# shellcheck shell=bash
# The end-to-end scenarios, sourced by scripts/e2e.sh after tests/e2e/lib.sh. Each one runs the
# commands a person types (kubectl with a user's kubeconfig, `kubectl twostep ...` with the code
# from oathtool on stdin) against the real API server and checks what they see and what the API
# server stored. $1 of each is the namespace; $mode is mutating or validating, $store_name the
# store's name (both set by the caller), and rc, out and err are what lib.sh's user_runs sets.
# shellcheck disable=SC2154

annotation=twostep.dev/token
refused_by='admission webhook "objects.twostep.dev" denied the request'

write_manifests() {
  cat >"$E2E_WORK/web.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example/web:1.0
EOF
  sed 's/replicas: 1/replicas: 2/' "$E2E_WORK/web.yaml" >"$E2E_WORK/web-v2.yaml"
  cat >"$E2E_WORK/ci-objects.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: ci-config}
data: {release: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ci-web}
spec:
  selector: {matchLabels: {app: ci-web}}
  template:
    metadata: {labels: {app: ci-web}}
    spec:
      containers: [{name: web, image: registry.example/web:1.0}]
---
apiVersion: v1
kind: Pod
metadata: {name: ci-pod}
spec:
  containers: [{name: shell, image: registry.example/shell:1.0}]
EOF
}

# An exempt identity (a service account's token) changes objects without a code; it also makes
# the objects the grant scenario deletes and execs into.
scenario_exempt() {
  local ns=$1
  note "exempt identity ($mode, $ns)"
  user_runs "ci" kubectl --kubeconfig "ci-$ns.kubeconfig" -n "$ns" create -f ci-objects.yaml
  expect_allowed "$mode: a service account creates objects without a code" 'pod/ci-pod created'
  user_runs "ci" kubectl --kubeconfig "ci-$ns.kubeconfig" -n "$ns" label configmap ci-config release=2 --overwrite
  expect_allowed "$mode: a service account updates an object without a code" 'configmap/ci-config labeled'
}

# alice: enrolment, a create without a code, a dry run, `kubectl twostep apply` with a code, what
# was stored, and the same code again.
scenario_codes() {
  local ns=$1 secret code
  note "codes ($mode, $ns)"
  secret=$(enroll add alice --no-qr | sed -n 's/^otpauth:.*[?&]secret=\([A-Z2-7]*\).*/\1/p')
  [[ -n $secret ]] || die "twostep-enroll add alice printed no otpauth URI with a secret"
  printf '%s' "$secret" >"$E2E_WORK/secrets/alice"
  rm -f "$E2E_WORK/steps/alice"

  user_runs alice kubectl --kubeconfig alice.kubeconfig -n "$ns" create -f web.yaml
  expect_refused "$mode: before confirming, alice is told to confirm" \
    "$refused_by: user alice has not confirmed two-step enrollment yet"
  if enroll confirm alice "$(next_code alice)" >/dev/null; then
    pass "$mode: twostep-enroll confirms alice with oathtool's code"
  else
    fail "$mode: twostep-enroll confirms alice with oathtool's code"
  fi

  user_runs alice kubectl --kubeconfig alice.kubeconfig -n "$ns" create -f web.yaml
  expect_refused "$mode: a create without a code is refused with what to do" \
    "$refused_by: no two-step code: add the current code from your authenticator app as annotation $annotation (\`kubectl twostep apply -f FILE\`, or set $annotation=<code>)"

  user_runs alice kubectl --kubeconfig alice.kubeconfig -n "$ns" create -f web.yaml --dry-run=server
  expect_allowed "$mode: a server-side dry run needs no code, with a warning" \
    "Warning: dry run: twostep checked no code; the real request will need one"

  code=$(next_code alice)
  with_code "$code"
  user_runs alice kubectl twostep apply -f web.yaml -n "$ns" --kubeconfig alice.kubeconfig
  expect_allowed "$mode: kubectl twostep apply with oathtool's code is allowed" 'deployment.apps/web created'

  local token last_applied
  token=$(stored "$ns" deployment/web "o['metadata'].get('annotations', {}).get('$annotation', '')")
  last_applied=$(stored "$ns" deployment/web \
    "o['metadata'].get('annotations', {}).get('kubectl.kubernetes.io/last-applied-configuration', '')")
  [[ -n $last_applied ]] || fail "$mode: kubectl apply stored its last-applied annotation" "none stored"
  if [[ $mode == mutating ]]; then
    expect_eq "$mode: the stored object has no code annotation" "$token" ""
    expect_eq "$mode: last-applied holds no code annotation" \
      "$([[ $last_applied == *"$annotation"* ]] && echo present || echo absent)" absent
    expect_eq "$mode: the code is nowhere in the stored object" \
      "$(stored "$ns" deployment/web "'$code' in json.dumps(o)")" False
  else
    expect_eq "$mode: the stored object keeps the used code" "$token" "$code"
    expect_eq "$mode: last-applied keeps it too" \
      "$([[ $last_applied == *"\"$annotation\":\"$code\""* ]] && echo present || echo absent)" present
  fi

  with_code "$code"
  user_runs alice kubectl twostep apply -f web-v2.yaml -n "$ns" --kubeconfig alice.kubeconfig
  expect_refused "$mode: the same code again is refused as a replay" \
    "$refused_by: this code was already used"
  expect_eq "$mode: the replayed change did not happen" \
    "$(stored "$ns" deployment/web "o['spec']['replicas']")" 1
}

# bob: deletes and exec need a grant; `kubectl twostep unlock` opens one.
scenario_grants() {
  local ns=$1
  note "grants ($mode, $ns)"
  enroll_active bob
  user_runs bob kubectl --kubeconfig bob.kubeconfig -n "$ns" delete deployment ci-web
  expect_refused "$mode: a delete without a grant is refused" \
    "$refused_by: deleting and exec/attach/port-forward need an open two-step grant: run \`kubectl twostep unlock\` and retry"
  user_runs bob kubectl --kubeconfig bob.kubeconfig -n "$ns" exec ci-pod -- true
  expect_refused "$mode: exec without a grant is refused" \
    "$refused_by: deleting and exec/attach/port-forward need an open two-step grant"

  with_code 000000
  user_runs bob kubectl twostep unlock --for 2m --kubeconfig bob.kubeconfig
  expect_refused "$mode: unlock with a wrong code is refused" "wrong two-step code for user bob"

  with_code "$(next_code bob)"
  user_runs bob kubectl twostep unlock --for 2m --kubeconfig bob.kubeconfig
  expect_allowed "$mode: kubectl twostep unlock opens a grant" "unlocked: twostep grant open until "

  user_runs bob kubectl --kubeconfig bob.kubeconfig -n "$ns" delete deployment ci-web
  expect_allowed "$mode: within the grant, the delete is allowed" 'deployment.apps "ci-web" deleted'

  # Without a kubelet (the suite's own cluster) an admitted exec fails afterwards, when the API
  # server looks for the pod's node; on a real cluster, when the image cannot be pulled. The
  # admission outcome is what counts: no denial, and the webhook's audit says grant.
  user_runs bob kubectl --kubeconfig bob.kubeconfig -n "$ns" exec ci-pod -- true
  if [[ $err != *"denied the request"* ]]; then
    pass "$mode: within the grant, exec passes admission (${err:-and runs})"
  else
    fail "$mode: within the grant, exec passes admission" "exit $rc: $err"
  fi
  expect_eq "$mode: the webhook allowed the exec by the grant" \
    "$(enroll audit --user bob --json | python3 -c '
import json, sys
events = json.load(sys.stdin)["events"]
print(any(e["operation"] == "CONNECT" and e["sub_resource"] == "exec" and e["decision"] == "allow"
          and e["reason"] == "grant" for e in events))')" True
}

# carol: the enforcement label of a namespace cannot be removed without a code.
scenario_namespace_label() {
  local ns=$1 code
  note "namespace label ($mode, $ns)"
  enroll_active carol
  user_runs carol kubectl --kubeconfig carol.kubeconfig label namespace "$ns" twostep.dev/enforce-
  expect_refused "$mode: removing the enforcement label without a code is refused" \
    'admission webhook "namespaces.twostep.dev" denied the request: no two-step code'
  expect_eq "$mode: the namespace is still enforced" \
    "$(kubectl --kubeconfig admin.kubeconfig get namespace "$ns" -o jsonpath='{.metadata.labels.twostep\.dev/enforce}')" enabled

  code=$(next_code carol)
  user_runs carol kubectl --kubeconfig carol.kubeconfig patch namespace "$ns" --type=merge \
    -p "{\"metadata\":{\"labels\":{\"twostep.dev/enforce\":null},\"annotations\":{\"$annotation\":\"$code\"}}}"
  expect_allowed "$mode: with a code in the same patch, the label is removed" "namespace/$ns patched"
  expect_eq "$mode: the label is gone" \
    "$(kubectl --kubeconfig admin.kubeconfig get namespace "$ns" -o jsonpath='{.metadata.labels.twostep\.dev/enforce}')" ""
  if [[ $mode == mutating ]]; then
    expect_eq "$mode: the namespace keeps no code" \
      "$(kubectl --kubeconfig admin.kubeconfig get namespace "$ns" -o json | grep -c "$code")" 0
  fi
}

# twostep stopped with its configurations still registered (failurePolicy Fail): what the
# default deployment keeps from calling it (exempt identities, namespaces without enforcement,
# SelfSubjectAccessReviews of other paths) goes on working; an enforced namespace fails closed.
# $1 is enforced, $2 a namespace whose enforcement label is gone. Leaves the webhook stopped.
scenario_twostep_down() {
  local ns=$1 open_ns=$2
  note "twostep down ($mode, $ns)"
  stop_webhook
  user_runs ci kubectl --kubeconfig "ci-$ns.kubeconfig" -n "$ns" label configmap ci-config \
    release=down --overwrite
  expect_allowed "twostep down: a service account still changes objects" 'configmap/ci-config labeled'
  user_runs alice kubectl --kubeconfig alice.kubeconfig -n "$open_ns" create configmap while-down
  expect_allowed "twostep down: a namespace without enforcement still takes changes" \
    'configmap/while-down created'
  user_runs alice kubectl --kubeconfig alice.kubeconfig auth can-i create configmaps -n "$ns"
  expect_allowed "twostep down: kubectl auth can-i still answers" 'yes'
  user_runs alice kubectl --kubeconfig alice.kubeconfig -n "$ns" create configmap while-down
  expect_refused "twostep down: an enforced namespace refuses changes, failing closed" \
    'failed calling webhook "objects.twostep.dev"'
}

# load-NN: 64 enrolled users create in parallel, each with a valid code, as 64 kubectl processes
# and (on the suite's own cluster) as 64 requests sent at once; then 64 kubectl creates by one
# exempt identity. All must be answered and allowed; the API server's own measure of the webhook
# call is reported next to the webhook's, at rest and under the bursts. racer: one code in 8
# parallel requests is accepted exactly once.
scenario_parallel() {
  local ns=$1 i user pids=() failures=0 allowed=0 replayed=0 sampler coded=0 phases=()
  local snap=$E2E_WORK/metrics
  note "parallel ($mode, $ns, store $store_name)"
  enroll_active racer "${load_users[@]}" "${rest_users[@]}"
  mkdir -p "$E2E_WORK/load"

  # Warm kubectl's discovery cache, so the burst measures creates, not 64 discoveries.
  kubectl --kubeconfig "ci-$ns.kubeconfig" -n "$ns" get configmaps >/dev/null

  # At rest, one after another: dry runs (no store work), then creates with a code.
  snapshot "$snap-rest"
  for i in $(seq -w 0 31); do
    kubectl --kubeconfig alice.kubeconfig -n "$ns" create configmap "dry-$i" --dry-run=server \
      >/dev/null 2>&1 || failures=$((failures + 1))
  done
  snapshot "$snap-dry"
  phases+=("at rest: 32 dry runs" "$snap-rest" "$snap-dry")
  for user in "${rest_users[@]}"; do
    kubectl --kubeconfig "$user.kubeconfig" -n "$ns" create -f - >/dev/null 2>&1 \
      <<<"$(configmap_with_code "$user" "$(next_code "$user")")" || failures=$((failures + 1))
  done
  coded=$((coded + ${#rest_users[@]}))
  snapshot "$snap-coded"
  phases+=("at rest: 16 creates, codes" "$snap-dry" "$snap-coded")
  expect_eq "$mode/$store_name: at rest, 32 dry runs and 16 creates with codes are allowed" "$failures" 0

  # 64 kubectl processes, each an enrolled user with its own code.
  for user in "${load_users[@]}"; do
    configmap_with_code "$user" "$(next_code "$user")" >"$E2E_WORK/load/$user.yaml"
  done
  sample_connections kubectl
  pids=()
  for user in "${load_users[@]}"; do
    kubectl --kubeconfig "$user.kubeconfig" -n "$ns" create -f "load/$user.yaml" \
      >"$E2E_WORK/load/$user.out" 2>&1 &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  snapshot "$snap-kubectl"
  stop_process "$sampler"
  coded=$((coded + ${#load_users[@]}))
  phases+=("burst: 64 kubectl, enrolled users (≤ $(cat load/peak-kubectl) connections)" "$snap-coded" "$snap-kubectl")
  expect_eq "$mode/$store_name: 64 parallel kubectl creates by enrolled users with valid codes are all allowed" \
    "$failures" 0
  ((failures == 0)) || explain "what kubectl printed:" \
    "$(cat "$E2E_WORK"/load/*.out | grep -v created | sort | uniq -c | head -5)"

  # kubectl processes take turns for the CPU, so fewer calls overlap than were started. Sent at
  # once over one HTTP/2 connection (curl --parallel), the 64 creates become 64 concurrent
  # webhook calls, each on a connection of its own (needs the users' tokens: own cluster only).
  local last=$snap-kubectl
  if ((!external_cluster)); then
    burst_at_once "$ns" "$snap-kubectl" "$snap-at-once"
    coded=$((coded + ${#load_users[@]}))
    last=$snap-at-once
  fi

  sample_connections exempt
  pids=()
  for i in $(seq -w 0 63); do
    kubectl --kubeconfig "ci-$ns.kubeconfig" -n "$ns" create configmap "exempt-$i" \
      >"$E2E_WORK/load/exempt-$i.out" 2>&1 &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  snapshot "$snap-exempt"
  stop_process "$sampler"
  phases+=("burst: 64 kubectl, one exempt SA (≤ $(cat load/peak-exempt) connections)" "$last" "$snap-exempt")
  expect_eq "$mode/$store_name: 64 parallel creates by an exempt identity are all allowed" "$failures" 0
  ((failures == 0)) || explain "what kubectl printed:" \
    "$(cat "$E2E_WORK"/load/exempt-*.out | grep -v created | sort | uniq -c | head -5)"

  local errors
  errors=$(python3 "$E2E_ROOT/tests/e2e/metrics.py" errors "$snap-rest.api" "$snap-exempt.api" \
    2>"$E2E_WORK/load/errors")
  expect_eq "$mode/$store_name: no webhook call failed or timed out (API server's count)" "$errors" 0
  [[ $errors == 0 ]] || explain "$(cat "$E2E_WORK/load/errors")" \
    "$(grep -i 'failed calling webhook' "$E2E_WORK/logs/kube-apiserver.log" | tail -n 3)"
  expect_eq "$mode/$store_name: the webhook verified every one of the $coded codes" \
    "$(python3 "$E2E_ROOT/tests/e2e/metrics.py" decisions "$snap-rest.hook" "$snap-exempt.hook" allow verified)" "$coded"
  expect_eq "$mode/$store_name: the $coded configmaps are stored, $([[ $mode == mutating ]] && echo without || echo with) their codes" \
    "$(kubectl --kubeconfig admin.kubeconfig -n "$ns" get configmaps -l e2e=coded -o json |
      python3 -c 'import json, sys; items = json.load(sys.stdin)["items"]
print(len(items), sum("'"$annotation"'" in (i["metadata"].get("annotations") or {}) for i in items))')" \
    "$coded $([[ $mode == mutating ]] && echo 0 || echo "$coded")"

  {
    echo "webhook admission time, $mode on $store_name (loadavg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
    python3 "$E2E_ROOT/tests/e2e/metrics.py" table "${phases[@]}"
    echo
  } | tee -a "$E2E_REPORT"

  # One code in 8 parallel requests: the replay compare-and-set lets exactly one through.
  local code
  code=$(next_code racer)
  pids=()
  for i in 1 2 3 4 5 6 7 8; do
    kubectl --kubeconfig racer.kubeconfig -n "$ns" create -f - >"$E2E_WORK/load/race-$i.out" 2>&1 \
      <<<"$(configmap_with_code "racer-$i" "$code")" &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  allowed=$(cat "$E2E_WORK"/load/race-*.out | grep -c 'created' || true)
  replayed=$(cat "$E2E_WORK"/load/race-*.out | grep -c 'this code was already used' || true)
  expect_eq "$mode/$store_name: one code sent 8 times at once is accepted once, refused 7 times as a replay" \
    "$allowed $replayed" "1 7"
}

# burst_at_once NAMESPACE SNAPSHOT_BEFORE SNAPSHOT_AFTER: the 64 load users' next codes, created
# by one curl over HTTP/2 with every request started at once; appends its phase to `phases`.
burst_at_once() {
  local ns=$1 user token code
  for user in "${load_users[@]}"; do
    token=$(awk -F, -v u="$user" '$2 == u { print $1 }' "$E2E_WORK/tokens.csv")
    code=$(next_code "$user")
    printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-at-once-%s","labels":{"e2e":"coded"},"annotations":{"%s":"%s"}},"data":{"k":"v"}}' \
      "$user" "$annotation" "$code" >"$E2E_WORK/load/$user.json"
    # Options apply per transfer: `next` starts the next one (none after the last).
    [[ $user == "${load_users[0]}" ]] || echo next
    cat <<EOF
url = "https://127.0.0.1:$api_port/api/v1/namespaces/$ns/configmaps"
cacert = "$E2E_WORK/api/ca.pem"
header = "Authorization: Bearer $token"
header = "Content-Type: application/json"
data-binary = "@$E2E_WORK/load/$user.json"
output = "$E2E_WORK/load/$user.at-once"
write-out = "%{http_code}\\n"
EOF
  done >"$E2E_WORK/load/at-once.curl"
  sample_connections at-once
  curl -sS --no-progress-meter --http2 --parallel --parallel-immediate --parallel-max 64 -K "$E2E_WORK/load/at-once.curl" \
    >"$E2E_WORK/load/at-once.codes" || true
  snapshot "$3"
  stop_process "$sampler"
  phases+=("burst: 64 at once (curl, HTTP/2), enrolled (≤ $(cat load/peak-at-once) connections)" "$2" "$3")
  expect_eq "$mode/$store_name: 64 creates sent at once by enrolled users with valid codes are all created" \
    "$(grep -c '^201$' "$E2E_WORK/load/at-once.codes" || true)" 64
}

# The users of the parallel scenario: 64 for the burst, 16 for the creates at rest.
mapfile -t load_users < <(printf 'load-%02d\n' $(seq 0 63))
mapfile -t rest_users < <(printf 'rest-%02d\n' $(seq 0 15))

# configmap_with_code NAME CODE: a ConfigMap manifest carrying CODE in the token annotation.
configmap_with_code() {
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%s\n  labels: {e2e: coded}\n  annotations: {%s: "%s"}\ndata: {k: v}\n' \
    "$1" "$annotation" "$2"
}

# sample_connections NAME: counts, until stop_process "$sampler", the most connections open at
# once to the webhook, into load/peak-NAME.
sample_connections() {
  start_process "connection sampler" /dev/null python3 "$E2E_ROOT/tests/e2e/metrics.py" \
    connections "${webhook_url##*:}" "$E2E_WORK/load/peak-$1"
  sampler=$last_pid
  for _ in $(seq 200); do
    [[ -s $E2E_WORK/load/peak-$1 ]] && return 0
    sleep 0.05
  done
  die "the connection sampler did not start"
}

# wait_all PID...: waits for every PID; sets failures to the number that exited non-zero.
wait_all() {
  local pid
  failures=0
  for pid in "$@"; do
    wait "$pid" || failures=$((failures + 1))
  done
}

# snapshot PREFIX: both sides' /metrics, as PREFIX.api and PREFIX.hook.
snapshot() {
  apiserver_metrics "$1.api"
  webhook_metrics "$1.hook"
}

# dana and erin: self-enrolment, `kubectl twostep enroll` through the API server. An admin invites
# dana; she enrols as herself, "scans" the URI the API server hands back to her (oathtool stands
# in for the app), types the first code and gets her recovery codes; `kubectl twostep apply` with
# her next code is then allowed. erin, not invited, is refused with whom to ask, and nothing is
# made for her. No secret, URI or recovery code reaches the API server's audit log (deploy/audit's
# rule), the webhook's log or twostep's audit log. /validate cannot hand a secret back: there,
# enrolment is refused with what to ask for.
scenario_self_enrollment() {
  local ns=$1 uri secret pid fifo status recovery show
  note "self-enrollment ($mode, $ns, store $store_name)"
  with_code 123456
  user_runs erin kubectl twostep enroll --kubeconfig erin.kubeconfig
  if [[ $mode == validating ]]; then
    expect_refused "$mode: kubectl twostep enroll is refused: it needs the mutating webhook" \
      "self-enrollment needs twostep's mutating webhook"
    return 0
  fi
  expect_refused "$mode/$store_name: erin, not invited, is refused with whom to ask" \
    "user erin has no open invitation to enroll; ask an admin to run \`twostep-enroll invite erin\`"
  expect_eq "$mode/$store_name: erin gets no secret" \
    "$([[ $out$err == *otpauth* ]] && echo secret || echo none)" none
  expect_eq "$mode/$store_name: nothing was made for erin" "$(enroll show erin 2>&1)" \
    "error: user 'erin' is not enrolled (see \`twostep-enroll list\`)"

  enroll invite dana --ttl 1h >/dev/null || fail "$mode/$store_name: twostep-enroll invites dana"
  local audited_before=0
  [[ -z $apiserver_audit_log ]] || audited_before=$(wc -l <"$apiserver_audit_log")
  # One `kubectl twostep enroll`, as dana types it: the code goes in once the URI is out.
  rm -f "$E2E_WORK/dana.in"
  mkfifo "$E2E_WORK/dana.in"
  printf '  [dana] $ kubectl twostep enroll --print-uri --kubeconfig dana.kubeconfig\n'
  kubectl twostep enroll --print-uri --kubeconfig dana.kubeconfig <"$E2E_WORK/dana.in" \
    >"$E2E_WORK/dana.out" 2>"$E2E_WORK/dana.err" &
  pid=$!
  e2e_pids+=("$pid kubectl twostep enroll")
  exec {fifo}>"$E2E_WORK/dana.in"
  uri=""
  for _ in $(seq 300); do
    uri=$(grep -m1 '^otpauth://' "$E2E_WORK/dana.out" || true)
    [[ -n $uri ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $uri ]]; then
    exec {fifo}>&-
    wait "$pid" || true
    fail "$mode/$store_name: dana's kubectl twostep enroll shows an otpauth URI" \
      "$(cat "$E2E_WORK/dana.out" "$E2E_WORK/dana.err")"
    return 0
  fi
  expect_eq "$mode/$store_name: the URI names dana's account" "${uri%%\?*}" "otpauth://totp/twostep:dana"
  secret=$(sed -n 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/p' <<<"$uri")
  expect_eq "$mode/$store_name: the URI carries a 160-bit secret" "${#secret}" 32
  printf '%s' "$secret" >"$E2E_WORK/secrets/dana"
  rm -f "$E2E_WORK/steps/dana"
  # "Scanning": oathtool computes the code the app would show.
  next_code dana >&"$fifo"
  exec {fifo}>&-
  status=0
  wait "$pid" || status=$?
  expect_eq "$mode/$store_name: dana's kubectl twostep enroll succeeds" "$status" 0
  [[ $status == 0 ]] || explain "$(cat "$E2E_WORK/dana.err")"
  expect_eq "$mode/$store_name: dana is told she is enrolled" \
    "$(grep -c '^Enrolled: two-step verification is active for you.$' "$E2E_WORK/dana.out")" 1
  mapfile -t recovery < <(sed -n 's/^  \([a-z0-9]\{4\}-[a-z0-9]\{4\}-[a-z0-9]\{4\}-[a-z0-9]\{4\}\)$/\1/p' \
    "$E2E_WORK/dana.out")
  expect_eq "$mode/$store_name: dana is shown 10 recovery codes" "${#recovery[@]}" 10
  show=$(enroll show dana)
  expect_eq "$mode/$store_name: dana is active, with her recovery codes, her invitation used up" \
    "$(grep -cE '^(state: +active|recovery codes: +10 left|invitation: +-)$' <<<"$show")" 3
  expect_eq "$mode/$store_name: the admin sees no secret" \
    "$([[ $show == *"$secret"* ]] && echo secret || echo none)" none

  cat >"$E2E_WORK/self-enrolled.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: self-enrolled}
data: {who: dana}
YAML
  with_code "$(next_code dana)"
  user_runs dana kubectl twostep apply -f self-enrolled.yaml -n "$ns" --kubeconfig dana.kubeconfig
  expect_allowed "$mode/$store_name: dana's kubectl twostep apply with her next code is allowed" \
    "configmap/self-enrolled created"
  with_code 123456
  user_runs erin kubectl twostep apply -f self-enrolled.yaml -n "$ns" --kubeconfig erin.kubeconfig
  expect_refused "$mode/$store_name: erin, not enrolled, still may not change anything" \
    "$refused_by: user erin is not enrolled in two-step verification"

  local leaks=()
  if [[ -n $apiserver_audit_log ]]; then
    local reviews
    reviews=$(tail -n "+$((audited_before + 1))" "$apiserver_audit_log" | grep '"username":"dana"' |
      grep '"resource":"selfsubjectaccessreviews"' || true)
    expect_eq "$mode/$store_name: the API server audited dana's two reviews, at Metadata level" \
      "$(grep -c '"level":"Metadata"' <<<"$reviews") $(grep -vc '"level":"Metadata"' <<<"$reviews")" "2 0"
    grep -q 'otpauth' "$apiserver_audit_log" && leaks+=("the API server's audit log holds an otpauth URI")
    grep -qF "$secret" "$apiserver_audit_log" && leaks+=("the API server's audit log holds the secret")
    for code in "${recovery[@]}"; do
      grep -qF "$code" "$apiserver_audit_log" && leaks+=("the API server's audit log holds recovery code $code")
    done
  fi
  grep -q 'otpauth' "$webhook_log" && leaks+=("the webhook's log holds an otpauth URI")
  grep -qF "$secret" "$webhook_log" && leaks+=("the webhook's log holds the secret")
  enroll audit --user dana --json >"$E2E_WORK/dana-audit.json"
  grep -qF "$secret" "$E2E_WORK/dana-audit.json" && leaks+=("twostep's audit log holds the secret")
  expect_eq "$mode/$store_name: no secret, URI or recovery code in any log" "${leaks[*]}" ""
  expect_eq "$mode/$store_name: twostep's audit log has the start and the confirmation" \
    "$(python3 -c '
import json, sys
reasons = {e["reason"] for e in json.load(open(sys.argv[1]))["events"] if e["decision"] == "allow"}
print("enroll_started" in reasons, "enrolled" in reasons)' "$E2E_WORK/dana-audit.json")" "True True"
}
