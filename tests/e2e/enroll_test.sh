#!/usr/bin/env bash
# Self-enrolment end to end, against the real kube-apiserver (design §3b, issue 15): etcd and
# kube-apiserver on loopback with static tokens, RBAC and the audit policy of deploy/audit, the
# real twostep-webhook registered through the MutatingWebhookConfiguration of deploy/base (its
# matchConditions decide which reviews reach the webhook), and the real kubectl plugin.
#
#   an admin invites alice; alice runs `kubectl twostep enroll` as herself, "scans" the URI the
#   API server hands back (oathtool stands in for the app), types the first code, gets her
#   recovery codes; `kubectl twostep apply` with her next code is allowed. bob, not invited, is
#   refused with a message that says whom to ask, and nothing is made for him. The API server's
#   audit log holds no secret, no URI and no recovery code.
#
# Usage: enroll_test.sh SOURCE_ROOT WEBHOOK ENROLL
# kube-apiserver: $KUBE_APISERVER, else SOURCE_ROOT/../shared/k8s/kube-apiserver (copied into the
# work dir), etcd and kubectl from PATH. Missing tools fail the test, never skip it. Ports are
# free loopback ports; every process started is stopped by its PID on exit.
set -euo pipefail

root=$(cd "${1:?usage: $0 SOURCE_ROOT WEBHOOK ENROLL}" && pwd)
webhook_bin=$(realpath "${2:?usage: $0 SOURCE_ROOT WEBHOOK ENROLL}")
enroll_bin=$(realpath "${3:?usage: $0 SOURCE_ROOT WEBHOOK ENROLL}")
apiserver_src=${KUBE_APISERVER:-$root/../shared/k8s/kube-apiserver}
plugin=$root/enroll/kubectl-twostep

work=$(mktemp -d "${TMPDIR:-/tmp}/twostep-e2e-enroll.XXXXXX")
pids=()
passed=0
failed=0

cleanup() {
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n ${TWOSTEP_E2E_KEEP:-} ]]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

note() { printf '# %s\n' "$*"; }
fatal() {
  printf 'FATAL: %s\n' "$*" >&2
  for log in "$work"/*.log; do
    [[ -s $log ]] || continue
    printf -- '--- last lines of %s:\n' "${log##*/}" >&2
    tail -n 20 "$log" >&2
  done
  printf '%s passed, %s failed\n' "$passed" "$((failed + 1))"
  exit 1
}
check() {  # check NAME STATUS DETAIL
  if [[ $2 -eq 0 ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAILED: %s\n  %s\n' "$1" "$3" >&2
  fi
}
# (`|| r=1`: a failed test must not end the script under set -e)
expect_eq() { local r=0; [[ $2 == "$3" ]] || r=1; check "$1" $r "expected [$3], got [$2]"; }
expect_contains() {
  local r=0
  [[ $2 == *"$3"* ]] || r=1
  check "$1" $r "expected to contain [$3]: [$2]"
}
expect_not_contains() { local r=0; [[ $2 != *"$3"* ]] || r=1; check "$1" $r "expected not to contain [$3]"; }

for tool in etcd kubectl oathtool openssl curl python3; do
  command -v "$tool" >/dev/null || fatal "$tool is not installed (scripts/install-deps.sh test)"
done
[[ -x $apiserver_src ]] || fatal "no kube-apiserver at $apiserver_src (set KUBE_APISERVER)"
cp "$apiserver_src" "$work/kube-apiserver"
cd "$work"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {  # start LOG COMMAND...: runs COMMAND in the background, records its PID in $last_pid
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

# --- certificates, users ----------------------------------------------------------------------
# shellcheck source-path=SCRIPTDIR source=../../bench/pki.sh
source "$root/bench/pki.sh"
mkdir -p pki
make_pki pki
openssl genrsa -out pki/sa.key 2048 2>/dev/null
openssl rsa -in pki/sa.key -pubout -out pki/sa.pub 2>/dev/null

token() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
admin_token=$(token)
alice_token=$(token)
bob_token=$(token)
{
  printf '%s,admin,uid-admin,"system:masters"\n' "$admin_token"
  printf '%s,alice,uid-alice,"e2e:developers"\n' "$alice_token"
  printf '%s,bob,uid-bob,"e2e:developers"\n' "$bob_token"
} >tokens.csv

# --- etcd and kube-apiserver ------------------------------------------------------------------
etcd_client=$(free_port)
etcd_peer=$(free_port)
start etcd.log etcd --name e2e --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" \
  --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "e2e=http://127.0.0.1:$etcd_peer"
for _ in $(seq 200); do
  curl -sf --max-time 2 "http://127.0.0.1:$etcd_client/health" | grep -q '"health":"true"' && break
  sleep 0.1
done
curl -sf --max-time 2 "http://127.0.0.1:$etcd_client/health" >/dev/null || fatal "etcd did not start"

api_port=$(free_port)
# The audit policy shipped in deploy/audit, at the level an admin following docs/security.md
# uses; a second rule catches everything else at RequestResponse, so a missing twostep rule
# would put the secrets in the log.
python3 - "$root/deploy/audit/audit-policy.yaml" >audit-policy.yaml <<'EOF'
import sys, yaml
policy = yaml.safe_load(open(sys.argv[1]))
policy["rules"] = policy["rules"][:1] + [{"level": "RequestResponse"}]
print(yaml.safe_dump(policy))
EOF
start kube-apiserver.log "$work/kube-apiserver" --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 --secure-port="$api_port" --endpoint-reconciler-type=none \
  --etcd-servers="http://127.0.0.1:$etcd_client" \
  --tls-cert-file=pki/server.pem --tls-private-key-file=pki/server.key \
  --client-ca-file=pki/ca.pem --token-auth-file=tokens.csv \
  --authorization-mode=RBAC --service-cluster-ip-range=10.96.0.0/24 \
  --service-account-issuer="https://127.0.0.1:$api_port" \
  --service-account-key-file=pki/sa.pub --service-account-signing-key-file=pki/sa.key \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
  --audit-policy-file=audit-policy.yaml --audit-log-path="$work/audit.log" \
  --profiling=false --cert-dir="$work/api-certs"
api_pid=$last_pid

kubeconfig() {  # kubeconfig USER TOKEN
  cat >"$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$work/pki/ca.pem"}
users:
  - name: $1
    user: {token: "$2"}
contexts:
  - name: e2e
    context: {cluster: e2e, user: $1}
current-context: e2e
EOF
  chmod 0600 "$1.kubeconfig"
}
kubeconfig admin "$admin_token"
kubeconfig alice "$alice_token"
kubeconfig bob "$bob_token"
admin() { kubectl --kubeconfig admin.kubeconfig "$@"; }

ready=0
for _ in $(seq 900); do
  kill -0 "$api_pid" 2>/dev/null || fatal "kube-apiserver exited"
  if admin get --raw /readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
((ready)) || fatal "kube-apiserver did not get ready in 90 s"
note "kube-apiserver $("$work/kube-apiserver" --version | awk '{print $2}') on 127.0.0.1:$api_port"

# An enforced namespace where developers may manage ConfigMaps.
admin create namespace demo >/dev/null
admin label namespace demo twostep.dev/enforce=enabled >/dev/null
admin create role configmaps -n demo --verb=get,list,create,update,patch,delete \
  --resource=configmaps >/dev/null
admin create rolebinding developers -n demo --role=configmaps --group=e2e:developers >/dev/null

# --- twostep ----------------------------------------------------------------------------------
db=$work/twostep.db
key=$work/master.key
"$enroll_bin" --db "$db" --master-key-file "$key" init >/dev/null
webhook_port=$(free_port)
start webhook.log "$webhook_bin" --listen="127.0.0.1:$webhook_port" --tls-cert=pki/server.pem \
  --tls-key=pki/server.key --db="$db" --master-key-file="$key" --log-format=text
webhook_pid=$last_pid
for _ in $(seq 200); do
  curl -sf --max-time 2 --cacert pki/ca.pem "https://127.0.0.1:$webhook_port/readyz" >/dev/null && break
  kill -0 "$webhook_pid" 2>/dev/null || fatal "twostep-webhook exited"
  sleep 0.1
done

# The MutatingWebhookConfiguration of deploy/base, pointed at this webhook.
kubectl kustomize "$root/deploy/base" >rendered.yaml
python3 - rendered.yaml "https://127.0.0.1:$webhook_port/mutate" pki/ca.pem >webhook.yaml <<'EOF'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
config = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
bundle = base64.b64encode(open(sys.argv[3], "rb").read()).decode()
for hook in config["webhooks"]:
    hook["clientConfig"] = {"url": sys.argv[2], "caBundle": bundle}
print(yaml.safe_dump(config))
EOF
admin apply -f webhook.yaml >/dev/null

as_user() {  # as_user USER COMMAND...: runs the plugin as USER (their kubeconfig)
  local user=$1
  shift
  KUBECONFIG="$work/$user.kubeconfig" "$plugin" "$@"
}

# The API server picks the configuration up within a second or two: wait until bob's enrolment
# is answered by twostep (refused: he has no invitation).
refused=""
for _ in $(seq 150); do
  refused=$(as_user bob enroll begin </dev/null 2>&1 || true)
  [[ $refused == *"twostep-enroll invite bob"* ]] && break
  sleep 0.2
done

# --- bob: not invited -------------------------------------------------------------------------
expect_contains "bob, not invited, is refused with whom to ask" "$refused" \
  "user bob has no open invitation to enroll; ask an admin to run \`twostep-enroll invite bob\`"
status=0
bob_out=$(printf '123456\n' | as_user bob enroll 2>&1) || status=$?
expect_eq "bob's enroll exits 1" "$status" 1
expect_contains "bob's enroll says it was refused" "$bob_out" "enrollment refused"
expect_not_contains "bob gets no secret" "$bob_out" "otpauth://"
bob_show=$("$enroll_bin" --db "$db" --master-key-file "$key" show bob 2>&1 || true)
expect_eq "nothing was made for bob" "$bob_show" \
  "error: user 'bob' is not enrolled (see \`twostep-enroll list\`)"

# --- alice: invited, enrols herself -----------------------------------------------------------
"$enroll_bin" --db "$db" --master-key-file "$key" invite alice --ttl 1h >/dev/null
mkfifo alice.stdin
as_user alice enroll --print-uri <alice.stdin >alice.out 2>alice.err &
alice_pid=$!
pids+=("$alice_pid")
exec 3>alice.stdin
uri=""
for _ in $(seq 300); do
  uri=$(grep -m1 '^otpauth://' alice.out || true)
  [[ -n $uri ]] && break
  kill -0 "$alice_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $uri ]] || { exec 3>&-; cat alice.err >&2; fatal "alice's enroll printed no otpauth URI"; }
expect_contains "the URI names alice's account" "$uri" "otpauth://totp/twostep:alice?"
secret=$(sed -n 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/p' <<<"$uri")
expect_eq "the URI carries a 160-bit secret" "${#secret}" 32
# "Scanning": oathtool computes the code the app would show.
printf '%s\n' "$(oathtool --totp -b "$secret")" >&3
exec 3>&-
status=0
wait "$alice_pid" || status=$?
alice_out=$(cat alice.out)
expect_eq "alice's enroll exits 0" "$status" 0
expect_contains "alice is told she is enrolled" "$alice_out" \
  "Enrolled: two-step verification is active for you."
mapfile -t recovery < <(sed -n 's/^  \([a-z0-9]\{4\}-[a-z0-9]\{4\}-[a-z0-9]\{4\}-[a-z0-9]\{4\}\)$/\1/p' alice.out)
expect_eq "alice gets 10 recovery codes" "${#recovery[@]}" 10
show=$("$enroll_bin" --db "$db" --master-key-file "$key" show alice)
expect_contains "alice is active" "$show" "state:           active"
expect_contains "alice has her recovery codes" "$show" "recovery codes:  10 left"
expect_contains "her invitation is used up" "$show" "invitation:      -"
expect_not_contains "the admin sees no secret" "$show" "$secret"

# A protected change with her next code (the confirming one is used: wait for the next step).
sleep $((31 - $(date +%s) % 30))
cat >cm.yaml <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: enrolled
data:
  who: alice
EOF
status=0
apply_out=$(as_user alice apply -f cm.yaml -n demo --code "$(oathtool --totp -b "$secret")" 2>&1) ||
  status=$?
expect_eq "alice's kubectl twostep apply is allowed" "$status" 0
expect_contains "the ConfigMap is created" "$apply_out" "configmap/enrolled created"
stored=$(admin get configmap enrolled -n demo -o jsonpath='{.metadata.annotations}')
expect_not_contains "the code was stripped before storage" "$stored" "twostep.dev/token"
# And bob, not enrolled, still cannot change anything there.
status=0
bob_apply=$(as_user bob apply -f cm.yaml -n demo --code 123456 2>&1) || status=$?
expect_eq "bob's apply is denied" "$status" 1
expect_contains "bob is told he is not enrolled" "$bob_apply" "user bob is not enrolled"

# --- what the logs hold -----------------------------------------------------------------------
audit=$(cat audit.log)
expect_contains "the API server audited the enrolment reviews" "$audit" \
  '"resource":"selfsubjectaccessreviews"'
expect_not_contains "its audit log holds no otpauth URI" "$audit" "otpauth"
expect_not_contains "its audit log holds no secret" "$audit" "$secret"
for code in "${recovery[@]}"; do
  [[ $audit != *"$code"* ]] || check "no recovery code in the API server's audit log" 1 "$code"
done
webhook_log=$(cat webhook.log)
expect_not_contains "the webhook never logs the URI" "$webhook_log" "otpauth"
expect_not_contains "the webhook never logs the secret" "$webhook_log" "$secret"
expect_contains "the webhook logged the enrolment" "$webhook_log" "enrolled"
twostep_audit=$("$enroll_bin" --db "$db" --master-key-file "$key" audit --user alice)
expect_contains "twostep's audit log has the start" "$twostep_audit" "enroll_started"
expect_contains "and the confirmation" "$twostep_audit" "enrolled"
expect_not_contains "and no secret" "$twostep_audit" "$secret"

printf '%s passed, %s failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
