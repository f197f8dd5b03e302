# shellcheck shell=bash
# The end-to-end harness, sourced by scripts/e2e.sh: a throwaway cluster (etcd and the real
# kube-apiserver on loopback, static tokens, RBAC), the real twostep-webhook registered through
# the webhook configurations rendered from deploy/, users as kubeconfigs, and the checks the
# scenarios use. Every process it starts is recorded and stopped by PID in e2e_cleanup (the
# caller's EXIT trap), which also removes the work directory.
#
# Needs, set by the caller: E2E_ROOT (the repository), KUBE_APISERVER, ETCD, WEBHOOK, ENROLL
# (binaries), E2E_WORK (an empty temp dir, the working directory of every command), and
# probe_namespace (an enforced namespace for wait_until_called). On a cluster it did not start
# (use_cluster), the suite leaves it as it found it: cluster_cleanup removes what it made.

# shellcheck source-path=SCRIPTDIR source=../../bench/pki.sh
source "$E2E_ROOT/bench/pki.sh"

e2e_pids=()         # "PID NAME" of every process started, in start order
e2e_passed=0
e2e_failed=0
e2e_failures=()
webhook_pid=""
webhook_url=""
webhook_address=127.0.0.1  # where the API server reaches the webhook (use_cluster may change it)
webhook_flags=()           # more flags for the webhook (the caller may set them)
external_cluster=0
e2e_namespaces=()
webhook_log=""
api_port=""

note() { printf '# %s\n' "$*"; }

# die MESSAGE: stops the run (the EXIT trap cleans up), with the logs that explain it.
die() {
  printf 'e2e: FATAL: %s\n' "$*" >&2
  e2e_show_logs
  exit 1
}

e2e_show_logs() {
  local log
  for log in "$E2E_WORK"/logs/*.log; do
    [[ -s $log ]] || continue
    printf -- '--- last lines of %s:\n' "${log#"$E2E_WORK"/}" >&2
    tail -n 15 "$log" >&2
  done
}

# start_process NAME LOG COMMAND...: runs COMMAND in the background and records its PID.
start_process() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  last_pid=$!
  e2e_pids+=("$last_pid $name")
}

# stop_process PID: SIGTERM, up to 20 s to exit, then SIGKILL. Only ever PIDs this run started.
stop_process() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "e2e: pid $pid did not stop within 20 s of SIGTERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# e2e_cleanup: stops everything started, newest first, and removes the work directory.
e2e_cleanup() {
  local i entry
  if ((external_cluster)); then
    cluster_cleanup
  fi
  for ((i = ${#e2e_pids[@]} - 1; i >= 0; i--)); do
    entry=${e2e_pids[i]}
    stop_process "${entry%% *}"
  done
  e2e_pids=()
  if [[ -n ${TWOSTEP_E2E_KEEP:-} ]]; then
    echo "e2e: kept $E2E_WORK (TWOSTEP_E2E_KEEP)" >&2
  else
    rm -rf "$E2E_WORK"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- the cluster ------------------------------------------------------------------------------

# start_etcd: etcd on two free loopback ports (client, peer); retries when a port was taken
# between choosing and binding. Sets etcd_url.
start_etcd() {
  local attempt client peer
  for attempt in 1 2 3 4 5; do
    client=$(free_port)
    peer=$(free_port)
    rm -rf "$E2E_WORK/etcd"
    start_process etcd "$E2E_WORK/logs/etcd.log" "$ETCD" --name e2e --data-dir "$E2E_WORK/etcd" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "e2e=http://127.0.0.1:$peer"
    for _ in $(seq 100); do
      if curl -sf --max-time 2 "http://127.0.0.1:$client/health" 2>/dev/null | grep -q '"health":"true"'; then
        etcd_url=http://127.0.0.1:$client
        note "etcd $($ETCD --version | sed -n 's/^etcd Version: //p') on $etcd_url (attempt $attempt)"
        return 0
      fi
      kill -0 "$last_pid" 2>/dev/null || break
      sleep 0.1
    done
    stop_process "$last_pid"
  done
  die "etcd did not start"
}

# groups_of USER: the user's groups. admin is in system:masters; every other user is in
# e2e:developers (bound to the built-in `edit` role in the test namespaces); carol may also
# relabel namespaces.
groups_of() {
  case $1 in
    admin) echo system:masters ;;
    carol) echo e2e:developers,e2e:namespace-editors ;;
    *) echo e2e:developers ;;
  esac
}

# token_users USER...: the static token file of the API server this suite starts, and each
# user's kubeconfig (admin.kubeconfig first: the others take its cluster).
token_users() {
  local user token specs=()
  : >"$E2E_WORK/tokens.csv"
  for user in admin "$@"; do
    token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '%s,%s,%s,"%s"\n' "$token" "$user" "uid-$user" "$(groups_of "$user")" >>"$E2E_WORK/tokens.csv"
    if [[ $user == admin ]]; then
      cat >"$E2E_WORK/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$E2E_WORK/api/ca.pem"}
users:
  - name: admin
    user: {token: "$token"}
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
EOF
      chmod 0600 "$E2E_WORK/admin.kubeconfig"
    else
      specs+=("$user=$token")
    fi
  done
  python3 "$E2E_ROOT/tests/e2e/kubeconfig.py" token admin.kubeconfig "$E2E_WORK" "${specs[@]}" ||
    die "cannot write the users' kubeconfigs"
}

# impersonated_users USER...: on a cluster the suite did not start, each user's kubeconfig is
# the admin acting as that user in its groups (tests/e2e/kubeconfig.py).
impersonated_users() {
  local user specs=()
  for user in "$@"; do
    specs+=("$user=$(groups_of "$user")")
  done
  python3 "$E2E_ROOT/tests/e2e/kubeconfig.py" impersonate admin.kubeconfig "$E2E_WORK" "${specs[@]}" ||
    die "cannot write the users' kubeconfigs"
}

# start_apiserver USER...: kube-apiserver on a free loopback port with a throwaway CA, serving
# certificate and service-account key, USERs (and admin) in its token file; waits for /readyz.
# Sets api_port.
start_apiserver() {
  local attempt pid begun
  mkdir -p "$E2E_WORK/api"
  make_pki "$E2E_WORK/api"
  openssl genrsa -out "$E2E_WORK/api/sa.key" 2048 2>/dev/null
  openssl rsa -in "$E2E_WORK/api/sa.key" -pubout -out "$E2E_WORK/api/sa.pub" 2>/dev/null
  for attempt in 1 2 3 4 5; do
    begun=$SECONDS
    api_port=$(free_port)
    token_users "$@"
    start_process kube-apiserver "$E2E_WORK/logs/kube-apiserver.log" "$KUBE_APISERVER" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
      --endpoint-reconciler-type=none --etcd-servers="$etcd_url" \
      --tls-cert-file="$E2E_WORK/api/server.pem" --tls-private-key-file="$E2E_WORK/api/server.key" \
      --client-ca-file="$E2E_WORK/api/ca.pem" --token-auth-file="$E2E_WORK/tokens.csv" \
      --authorization-mode=RBAC --service-cluster-ip-range=10.96.0.0/24 \
      --service-account-issuer="https://127.0.0.1:$api_port" \
      --service-account-key-file="$E2E_WORK/api/sa.pub" \
      --service-account-signing-key-file="$E2E_WORK/api/sa.key" \
      --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
      --profiling=false --cert-dir="$E2E_WORK/api/certs"
    pid=$last_pid
    for _ in $(seq 600); do
      if kubectl --kubeconfig admin.kubeconfig get --raw /readyz >/dev/null 2>&1; then
        note "kube-apiserver $("$KUBE_APISERVER" --version | cut -d' ' -f2) on 127.0.0.1:$api_port, ready after $((SECONDS - begun)) s (attempt $attempt)"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    stop_process "$pid"
    grep -q 'address already in use' "$E2E_WORK/logs/kube-apiserver.log" || break
  done
  die "kube-apiserver did not become ready"
}

# fill_edit_role: the controller manager, which does not run here, aggregates the built-in
# `edit` ClusterRole; copy the rules it would aggregate (edit's and view's) in once.
fill_edit_role() {
  python3 - "$E2E_WORK/admin.kubeconfig" <<'EOF' || die "cannot fill the edit ClusterRole"
import json, subprocess, sys
kubectl = ["kubectl", "--kubeconfig", sys.argv[1]]
rules = []
for role in ("system:aggregate-to-edit", "system:aggregate-to-view"):
    out = subprocess.check_output(kubectl + ["get", "clusterrole", role, "-o", "json"])
    rules += json.loads(out)["rules"]
patch = json.dumps({"rules": rules})
subprocess.check_call(kubectl + ["patch", "clusterrole", "edit", "--type=merge", "-p", patch],
                      stdout=subprocess.DEVNULL)
EOF
}

# setup_cluster: what a real cluster has and this one lacks, and what the users may do.
setup_cluster() {
  if ((!external_cluster)); then
    fill_edit_role
  fi
  cat >"$E2E_WORK/namespace-editors.yaml" <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-namespace-editor}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list, update, patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-namespace-editors}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-namespace-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "e2e:namespace-editors"}]
EOF
  admin apply -f "$E2E_WORK/namespace-editors.yaml"
}

# use_cluster KUBECONFIG ADDRESS: run on a cluster this suite did not start (kind, or any other;
# a throwaway one: while the suite runs, its webhook configurations are in force), as the admin
# of KUBECONFIG's current context. The webhook listens on ADDRESS, which the API server must
# reach (for kind, the docker network's gateway). Users are the admin impersonating them.
use_cluster() {
  local existing
  external_cluster=1
  webhook_address=$2
  kubectl config view --raw --minify --flatten --kubeconfig "$1" >admin.kubeconfig ||
    die "cannot read the kubeconfig $1"
  chmod 0600 admin.kubeconfig
  [[ $(kubectl --kubeconfig admin.kubeconfig auth can-i '*' '*' --all-namespaces 2>&1) == yes ]] ||
    die "$1 does not act as a cluster admin (kubectl auth can-i '*' '*' --all-namespaces)"
  existing=$(kubectl --kubeconfig admin.kubeconfig get mutatingwebhookconfigurations,validatingwebhookconfigurations \
    -l app.kubernetes.io/part-of=twostep -o name) || die "cannot list webhook configurations"
  [[ -z $existing ]] ||
    die "twostep is installed in this cluster ($existing); run the suite on a cluster without it, e.g. a new kind cluster"
  note "cluster $(kubectl --kubeconfig admin.kubeconfig config view -o jsonpath='{.clusters[0].cluster.server}'), $(
    kubectl --kubeconfig admin.kubeconfig version -o json 2>/dev/null |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
}

# cluster_cleanup: on a cluster the suite did not start, removes what it made: the webhook
# configurations first (so nothing refuses the rest), then the namespaces and the role. Never
# fails: it runs on the way out.
cluster_cleanup() {
  local k=(kubectl --kubeconfig "$E2E_WORK/admin.kubeconfig")
  "${k[@]}" delete mutatingwebhookconfiguration,validatingwebhookconfiguration \
    -l app.kubernetes.io/part-of=twostep --ignore-not-found >/dev/null ||
    echo "e2e: could not delete the webhook configurations; delete them by hand" >&2
  if ((${#e2e_namespaces[@]})); then
    "${k[@]}" delete namespace "${e2e_namespaces[@]}" --ignore-not-found --wait=false >/dev/null ||
      echo "e2e: could not delete the namespaces ${e2e_namespaces[*]}" >&2
  fi
  "${k[@]}" delete clusterrolebinding e2e-namespace-editors --ignore-not-found >/dev/null || true
  "${k[@]}" delete clusterrole e2e-namespace-editor --ignore-not-found >/dev/null || true
}

# make_namespaces NAME...: enforced namespaces, each with its `default` service account (the
# controller manager would make it), developers bound to `edit`, and a service account `ci` bound
# to `edit` whose token is the exempt identity (ci-NAME.kubeconfig). Done before any webhook is
# registered: admin is not exempt.
make_namespaces() {
  local ns
  e2e_namespaces+=("$@")
  for ns in "$@"; do
    cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns, labels: {twostep.dev/enforce: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: $ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: developers, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "e2e:developers"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: ServiceAccount, name: ci, namespace: $ns}]
---
EOF
  done >"$E2E_WORK/namespaces.yaml"
  admin apply -f "$E2E_WORK/namespaces.yaml"
  # The controller manager makes `default` in a real cluster, perhaps right now: exists is fine.
  local specs=() token out
  for ns in "$@"; do
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: %s}\n---\n' "$ns"
  done >"$E2E_WORK/default-accounts.yaml"
  out=$(kubectl --kubeconfig admin.kubeconfig create -f "$E2E_WORK/default-accounts.yaml" 2>&1) ||
    [[ $(grep -v -c 'created\|AlreadyExists' <<<"$out") == 0 ]] ||
    die "cannot create the default service accounts: $out"
  for ns in "$@"; do
    token=$(kubectl --kubeconfig admin.kubeconfig -n "$ns" create token ci --duration=2h) ||
      die "cannot make a token for service account $ns/ci"
    specs+=("ci-$ns=$token")
  done
  python3 "$E2E_ROOT/tests/e2e/kubeconfig.py" token admin.kubeconfig "$E2E_WORK" "${specs[@]}" ||
    die "cannot write the service accounts' kubeconfigs"
}

# admin ARGS...: kubectl as the cluster admin; output hidden unless it fails.
admin() {
  local out
  out=$(kubectl --kubeconfig admin.kubeconfig "$@" 2>&1) || die "admin: kubectl $*: $out"
}

# --- the webhook ------------------------------------------------------------------------------

# new_store NAME [DB]: a fresh master key and database (SQLite file in the work dir unless DB,
# e.g. a postgresql:// URL, is given). Sets store_db and store_key.
new_store() {
  local dir=$E2E_WORK/store-$1
  mkdir -p "$dir"
  store_key=$dir/master.key
  store_db=${2:-$dir/twostep.db}
  enroll init >/dev/null || die "twostep-enroll init failed for $1"
}

# enroll ARGS...: twostep-enroll on the current store.
enroll() { "$ENROLL" --db "$store_db" --master-key-file "$store_key" "$@"; }

# enroll_active USER...: active users with fresh secrets (saved for oathtool in secrets/USER).
enroll_active() {
  local user
  mkdir -p "$E2E_WORK/secrets" "$E2E_WORK/steps"
  for user in "$@"; do
    head -c 20 /dev/urandom | base32 | tr -d '=\n' >"$E2E_WORK/secrets/$user"
    rm -f "$E2E_WORK/steps/$user"
    printf '%s,%s\n' "$user" "$(cat "$E2E_WORK/secrets/$user")"
  done >"$E2E_WORK/import.csv"
  enroll import "$E2E_WORK/import.csv" >/dev/null || die "twostep-enroll import failed"
}

# next_code USER: a code from oathtool (not our TOTP code) for a time step newer than any used
# for USER before, within the webhook's window: the current step, or the next one when the
# current one was used (the webhook accepts one step either side). Waits when both were used.
next_code() {
  local user=$1 now step last
  now=$(date +%s)
  step=$((now / 30))
  last=$(cat "$E2E_WORK/steps/$user" 2>/dev/null || echo 0)
  if ((step <= last)); then
    step=$((last + 1))
  fi
  if ((step > now / 30 + 1)); then
    sleep $(((step - 1) * 30 - now))
  fi
  echo "$step" >"$E2E_WORK/steps/$user"
  oathtool --totp -b "$(cat "$E2E_WORK/secrets/$user")" -N "@$((step * 30))"
}

# start_webhook NAME: twostep-webhook on $webhook_address, port 0 (the port is read from its
# log), on the current store, with the caller's webhook_flags; waits for /readyz. Sets
# webhook_pid, webhook_url.
start_webhook() {
  local port="" line
  webhook_log=$E2E_WORK/logs/webhook-$1.log
  if [[ ! -f $E2E_WORK/hook/server.pem ]]; then
    mkdir -p "$E2E_WORK/hook"
    make_pki "$E2E_WORK/hook" "$webhook_address"
  fi
  start_process "twostep-webhook" "$webhook_log" "$WEBHOOK" --listen="$webhook_address:0" \
    --tls-cert="$E2E_WORK/hook/server.pem" --tls-key="$E2E_WORK/hook/server.key" \
    --db="$store_db" --master-key-file="$store_key" --log-format=text "${webhook_flags[@]}"
  webhook_pid=$last_pid
  for _ in $(seq 300); do
    line=$(grep -m1 'listening on' "$webhook_log" 2>/dev/null || true)
    if [[ $line == *"listening on $webhook_address:"* ]]; then
      port=${line##*"listening on $webhook_address:"}
      port=${port%%[!0-9]*}
    fi
    [[ -n $port ]] && break
    kill -0 "$webhook_pid" 2>/dev/null || die "twostep-webhook exited at start"
    sleep 0.1
  done
  [[ -n $port ]] || die "twostep-webhook logged no 'listening on $webhook_address:PORT' within 30 s"
  webhook_url=https://$webhook_address:$port
  for _ in $(seq 100); do
    if curl -sf --max-time 2 --cacert "$E2E_WORK/hook/ca.pem" "$webhook_url/readyz" >/dev/null; then
      note "twostep-webhook on $webhook_url ($1)"
      return 0
    fi
    sleep 0.1
  done
  die "twostep-webhook is not ready at $webhook_url/readyz"
}

stop_webhook() {
  [[ -n $webhook_pid ]] || return 0
  stop_process "$webhook_pid"
  webhook_pid=""
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$webhook_log"; then
    die "the sanitizers reported an error in $webhook_log"
  fi
}

# webhook_metrics FILE: the webhook's /metrics.
webhook_metrics() {
  curl -sf --max-time 5 --cacert "$E2E_WORK/hook/ca.pem" "$webhook_url/metrics" >"$1" ||
    die "cannot read the webhook's /metrics"
}

# apiserver_metrics FILE: the API server's /metrics.
apiserver_metrics() {
  kubectl --kubeconfig admin.kubeconfig get --raw /metrics >"$1" || die "cannot read the API server's /metrics"
}

# --- registration ---------------------------------------------------------------------------

# render DEPLOY COMPONENTS...: `kubectl kustomize` of a kustomization that takes the deploy/
# directory DEPLOY (relative to the repository) as its resource and adds the components (paths
# relative to the repository): what a user would write, with the repository's manifests.
render() {
  local deploy=$1 dir=$E2E_WORK/render c
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - $(realpath --relative-to="$dir" "$E2E_ROOT/$deploy")"
    if (($#)); then
      echo "components:"
      for c in "$@"; do
        echo "  - $(realpath --relative-to="$dir" "$E2E_ROOT/$c")"
      done
    fi
  } >"$dir/kustomization.yaml"
  kubectl kustomize "$dir" || die "kubectl kustomize of $deploy + $* failed"
}

# register DEPLOY COMPONENTS...: applies the rendered manifests with the webhook entries pointed
# at the running webhook (tests/e2e/register.py), then waits until the API server calls it.
register() {
  unregister
  render "$@" >"$E2E_WORK/rendered.yaml"
  local only=()
  # On a cluster the suite did not start, only the webhook configurations: the rest would start
  # a twostep there that nothing uses.
  ((external_cluster)) && only=(--webhooks-only)
  python3 "$E2E_ROOT/tests/e2e/register.py" "${only[@]}" "$webhook_url" "$E2E_WORK/hook/ca.pem" \
    <"$E2E_WORK/rendered.yaml" >"$E2E_WORK/registered.yaml" 2>"$E2E_WORK/register.err" ||
    die "register.py: $(cat "$E2E_WORK/register.err")"
  note "$(cat "$E2E_WORK/register.err")"
  admin apply -f "$E2E_WORK/registered.yaml"
  wait_until_called
}

unregister() {
  admin delete mutatingwebhookconfiguration,validatingwebhookconfiguration \
    -l app.kubernetes.io/part-of=twostep --ignore-not-found
}

# wait_until_called: the API server picks up webhook configurations asynchronously. Until it
# does, the probe user's (not enrolled) create in an enforced namespace is either allowed (no
# configuration yet) or fails to reach a webhook that is gone; once it is refused by twostep, the
# new configuration is in force.
wait_until_called() {
  local out
  # shellcheck disable=SC2154 # set by the caller
  for _ in $(seq 100); do
    out=$(kubectl --kubeconfig probe.kubeconfig -n "$probe_namespace" create configmap \
      "probe-$RANDOM$RANDOM" --dry-run=none 2>&1) || true
    if [[ $out == *"user probe is not enrolled"* ]]; then
      return 0
    fi
    sleep 0.2
  done
  die "the API server does not call the webhook at $webhook_url (last answer: $out)"
}

# --- checks -----------------------------------------------------------------------------------

pass() {
  e2e_passed=$((e2e_passed + 1))
  printf 'ok - %s\n' "$1"
}

fail() {
  e2e_failed=$((e2e_failed + 1))
  e2e_failures+=("$1")
  printf 'not ok - %s\n' "$1"
  shift
  printf '  %s\n' "$@"
}

# explain LINE...: more detail on the check that just failed (not counted again).
explain() {
  printf '  %s\n' "$@"
}

# user_runs USER COMMAND...: runs a command as the user types it, in the work dir, with the code
# (if any) on stdin from $code_in; sets rc, out, err and shows the command.
user_runs() {
  local who=$1
  shift
  printf '  [%s] $ %s\n' "$who" "$*"
  rc=0
  "$@" <"${code_in:-/dev/null}" >"$E2E_WORK/out" 2>"$E2E_WORK/err" || rc=$?
  out=$(cat "$E2E_WORK/out")
  err=$(cat "$E2E_WORK/err")
  code_in=""
}

# with_code CODE: the next user_runs gets CODE on stdin (the plugin reads it there when stdin is
# not a terminal, as with `pass otp twostep | kubectl twostep apply ...`).
with_code() {
  printf '%s\n' "$1" >"$E2E_WORK/code.in"
  code_in=$E2E_WORK/code.in
}

# expect_allowed NAME [NEEDLE]: the last command succeeded (and printed NEEDLE).
expect_allowed() {
  if ((rc != 0)); then
    fail "$1" "expected success, got exit $rc: $err"
  elif [[ -n ${2:-} && $out$err != *"$2"* ]]; then
    fail "$1" "expected [$2] in: $out $err"
  else
    pass "$1"
  fi
}

# expect_refused NAME NEEDLE: the last command failed and its error contains NEEDLE.
expect_refused() {
  if ((rc == 0)); then
    fail "$1" "expected a refusal, but it succeeded: $out"
  elif [[ $err != *"$2"* ]]; then
    fail "$1" "expected [$2] in the error: $err"
  else
    pass "$1"
  fi
}

# expect_eq NAME ACTUAL EXPECTED
expect_eq() {
  if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "expected [$3], got [$2]"; fi
}

# stored NAMESPACE KIND/NAME PYTHON-EXPR: evaluates EXPR over the stored object `o` (as the admin
# reads it back from the API server) and prints the result.
stored() {
  kubectl --kubeconfig admin.kubeconfig -n "$1" get "$2" -o json |
    python3 -c 'import json, sys; o = json.load(sys.stdin); print(eval(sys.argv[1]))' "$3"
}
