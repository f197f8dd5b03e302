#!/usr/bin/env bash
# The end-to-end suite: twostep behind a real kube-apiserver. Starts etcd and kube-apiserver on
# loopback (throwaway CA, static tokens, RBAC), runs twostep-webhook on loopback, registers it
# through the webhook configurations rendered from deploy/ (entries pointed at a loopback url by
# tests/e2e/register.py), and runs the scenarios of tests/e2e/scenarios.sh as users type them:
# kubectl with a user's kubeconfig and `kubectl twostep ...` with codes from oathtool. Three
# rounds: mutating on SQLite, validating on SQLite, mutating on PostgreSQL. Everything it starts
# is stopped by PID at the end, on failure and on Ctrl-C too; the temp dir is removed.
#
# Usage: scripts/e2e.sh [--no-postgres] [--cluster KUBECONFIG --webhook-address IP]
#   --cluster     run on the cluster of KUBECONFIG's current context (as its admin) instead of
#                 starting one: kind or any other, without twostep installed, and a throwaway
#                 one (while the suite runs, its webhook configurations are in force there). The
#                 webhook runs here, on IP, which the API server must reach; users are the admin
#                 impersonating them. What the suite made in the cluster is removed at the end.
# Environment:
#   KUBE_APISERVER         the kube-apiserver binary (default ../shared/k8s/kube-apiserver)
#   TWOSTEP_WEBHOOK, TWOSTEP_ENROLL   the binaries under test (default: the ci preset's build)
#   TWOSTEP_E2E_DEPLOY     the kustomization rendered, relative to the repository (default
#                          deploy/base, the default deployment)
#   TWOSTEP_E2E_COMPONENTS components added for the mutating rounds (default: grants, which the
#                          delete and exec scenarios need)
#   TWOSTEP_E2E_VALIDATING components added for the validating round (default: grants, validating)
#   TWOSTEP_E2E_WEBHOOK_FLAGS  more flags for twostep-webhook, e.g. "--threads=128" (experiments)
#   TWOSTEP_E2E_REPORT     also write the timing tables (markdown) to this file
#   TWOSTEP_E2E_KEEP=1     keep the temp dir (logs, kubeconfigs) for a look afterwards
# The PostgreSQL round runs next to a throwaway server: without TWOSTEP_TEST_POSTGRES_URL the
# script re-runs itself under scripts/with-postgres.sh (--no-postgres leaves that round out).
set -euo pipefail
cd "$(dirname "$0")/.."
E2E_ROOT=$PWD

usage() {
  echo "usage: $0 [--no-postgres] [--cluster KUBECONFIG --webhook-address IP]" >&2
  exit 2
}
postgres=1
cluster=""
webhook_ip=""
args=("$@")
while (($#)); do
  case $1 in
    --no-postgres) postgres=0 ;;
    --cluster) (($# > 1)) || usage; cluster=$(realpath "$2"); shift ;;
    --webhook-address) (($# > 1)) || usage; webhook_ip=$2; shift ;;
    *) usage ;;
  esac
  shift
done
[[ -z $cluster && -z $webhook_ip || -n $cluster && -n $webhook_ip ]] || usage
[[ -z $cluster || -r $cluster ]] || { echo "e2e: cannot read $cluster" >&2; exit 2; }

# What the suite needs, and where each comes from, all at once.
missing=()
KUBE_APISERVER=${KUBE_APISERVER:-$E2E_ROOT/../shared/k8s/kube-apiserver}
if [[ -z $cluster && ! -x $KUBE_APISERVER ]]; then
  missing+=("kube-apiserver at $KUBE_APISERVER: set KUBE_APISERVER=/path/to/kube-apiserver (v1.28 or later, linux/amd64, e.g. from https://dl.k8s.io/release/v1.28.0/bin/linux/amd64/kube-apiserver)")
fi
WEBHOOK=${TWOSTEP_WEBHOOK:-$E2E_ROOT/build/ci/src/twostep-webhook}
ENROLL=${TWOSTEP_ENROLL:-$E2E_ROOT/build/ci/enroll/twostep-enroll}
for binary in "$WEBHOOK" "$ENROLL"; do
  [[ -x $binary ]] || missing+=("$binary: build it (cmake --preset ci && cmake --build --preset ci)")
done
ETCD=$(command -v etcd || true)
[[ -n $ETCD || -n $cluster ]] || missing+=("etcd: apt-get install etcd-server (scripts/install-deps.sh test)")
command -v kubectl >/dev/null || missing+=("kubectl: scripts/install-kubectl.sh")
for tool in oathtool openssl curl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool: scripts/install-deps.sh test")
done
python3 -c 'import yaml' 2>/dev/null || missing+=("python3-yaml: scripts/install-deps.sh test")
if ((postgres)) && [[ -z ${TWOSTEP_TEST_POSTGRES_URL:-} ]] && ! command -v psql >/dev/null; then
  missing+=("psql: apt-get install postgresql (scripts/install-deps.sh test)")
fi
if ((${#missing[@]})); then
  echo "e2e: cannot run the end-to-end suite; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

if ((postgres)) && [[ -z ${TWOSTEP_TEST_POSTGRES_URL:-} ]]; then
  exec scripts/with-postgres.sh "$0" "${args[@]}"
fi

DEPLOY=${TWOSTEP_E2E_DEPLOY:-deploy/base}
read -r -a mutating_components <<<"${TWOSTEP_E2E_COMPONENTS-deploy/components/grants}"
read -r -a validating_components <<<"${TWOSTEP_E2E_VALIDATING-deploy/components/grants deploy/components/validating}"

E2E_WORK=$(mktemp -d "${TMPDIR:-/tmp}/twostep-e2e.XXXXXX")
E2E_REPORT=$E2E_WORK/report.md
# shellcheck source-path=SCRIPTDIR source=../tests/e2e/lib.sh
source tests/e2e/lib.sh
# shellcheck source-path=SCRIPTDIR source=../tests/e2e/scenarios.sh
source tests/e2e/scenarios.sh
read -r -a webhook_flags <<<"${TWOSTEP_E2E_WEBHOOK_FLAGS:-}"

pg_database=""
# shellcheck disable=SC2317 # the EXIT trap
finish() {
  local status=$?
  e2e_cleanup
  if [[ -n $pg_database ]]; then
    psql -q "$TWOSTEP_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $pg_database WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date +%s)
mkdir -p "$E2E_WORK/logs" "$E2E_WORK/bin" "$E2E_WORK/secrets" "$E2E_WORK/steps"
cd "$E2E_WORK"
# The plugin as users install it; kubectl's cache in the temp dir; and a kubeconfig that reaches
# nothing, so a command that forgets its user's kubeconfig fails instead of using the caller's.
ln -s "$E2E_ROOT/enroll/kubectl-twostep" bin/kubectl-twostep
export PATH=$E2E_WORK/bin:$PATH
export KUBECACHEDIR=$E2E_WORK/kube-cache
printf 'apiVersion: v1\nkind: Config\n' >nobody.kubeconfig
export KUBECONFIG=$E2E_WORK/nobody.kubeconfig
note "kubectl $(kubectl version --client | sed -n 's/^Client Version: //p'), webhook $WEBHOOK"
note "rendering $DEPLOY + ${mutating_components[*]} (validating round: + ${validating_components[*]})"

users=(alice bob carol dana erin probe racer "${load_users[@]}" "${rest_users[@]}")
if [[ -n $cluster ]]; then
  use_cluster "$cluster" "$webhook_ip"
  impersonated_users "${users[@]}"
  # Names of our own in a cluster that may hold others.
  prefix=twostep-e2e-$(od -An -tx1 -N3 /dev/urandom | tr -d ' \n')-
else
  start_etcd
  start_apiserver "${users[@]}"
  prefix=""
fi
setup_cluster
probe_namespace=${prefix}probe
make_namespaces "$probe_namespace" "${prefix}demo-mutating" "${prefix}labels-mutating" \
  "${prefix}demo-validating" "${prefix}labels-validating" "${prefix}demo-postgres"
write_manifests
note "cluster ready after $(($(date +%s) - started)) s"

# Round 1: the default, mutating, on SQLite.
mode=mutating store_name=sqlite
new_store sqlite-mutating
start_webhook sqlite-mutating
register "$DEPLOY" "${mutating_components[@]}"
scenario_exempt "${prefix}demo-mutating"
scenario_codes "${prefix}demo-mutating"
scenario_grants "${prefix}demo-mutating"
scenario_namespace_label "${prefix}labels-mutating"
scenario_self_enrollment "${prefix}demo-mutating"
scenario_parallel "${prefix}demo-mutating"
scenario_twostep_down "${prefix}demo-mutating" "${prefix}labels-mutating"

# Round 2: validating (the annotation is kept), on SQLite.
stop_webhook
mode=validating store_name=sqlite
new_store sqlite-validating
start_webhook sqlite-validating
register "$DEPLOY" "${validating_components[@]}"
scenario_exempt "${prefix}demo-validating"
scenario_codes "${prefix}demo-validating"
scenario_grants "${prefix}demo-validating"
scenario_namespace_label "${prefix}labels-validating"
scenario_self_enrollment "${prefix}demo-validating"

# Round 3: mutating on PostgreSQL: replay, unlock, self-enrolment and the parallel scenarios.
if ((postgres)); then
  stop_webhook
  mode=mutating store_name=postgresql
  pg_database=twostep_e2e_$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
  psql -q "$TWOSTEP_TEST_POSTGRES_URL" -c "CREATE DATABASE $pg_database" >/dev/null ||
    die "cannot create database $pg_database on the test PostgreSQL server"
  new_store postgresql "$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$TWOSTEP_TEST_POSTGRES_URL" "$pg_database")"
  start_webhook postgresql
  register "$DEPLOY" "${mutating_components[@]}"
  scenario_exempt "${prefix}demo-postgres"
  scenario_codes "${prefix}demo-postgres"
  scenario_grants "${prefix}demo-postgres"
  scenario_self_enrollment "${prefix}demo-postgres"
  scenario_parallel "${prefix}demo-postgres"
fi
stop_webhook

echo
cat "$E2E_REPORT"
if [[ -n ${TWOSTEP_E2E_REPORT:-} ]]; then
  cp "$E2E_REPORT" "$TWOSTEP_E2E_REPORT"
fi
echo
note "$e2e_passed passed, $e2e_failed failed in $(($(date +%s) - started)) s"
if ((e2e_failed)); then
  printf 'e2e: FAILED: %s\n' "${e2e_failures[@]}" >&2
  e2e_show_logs
  exit 1
fi
echo "e2e: all end-to-end scenarios passed"
