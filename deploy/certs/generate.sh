#!/bin/sh
# Makes the webhook's TLS certificates with openssl alone (for clusters without cert-manager):
#   1. a CA (kept in the output directory and reused on later runs, so renewals keep the caBundle);
#   2. a serving certificate signed by it for the Service's DNS names;
#   3. the caBundle: a kustomize patch for the generated-certs component, and, when the webhook
#      configuration already exists in the cluster, a live `kubectl patch` (done BEFORE the Secret
#      changes, so the API server trusts the new certificate before the webhook serves it);
#   4. the TLS Secret, through `kubectl create secret tls --dry-run=client -o yaml | kubectl apply`.
# Needs openssl; kubectl only for steps 3 (live) and 4 (skip both with --no-apply).
#
# Usage: deploy/certs/generate.sh [--no-apply] [--new-ca] [--dir DIR] [--days N] [--ca-days N]
#          [--namespace NS] [--service NAME] [--secret NAME] [--patch FILE]
#   --no-apply   touch no cluster: write DIR/tls-secret.yaml (apply it yourself) and the patch
#   --new-ca     replace the CA; the caBundle then holds the new and the previous CA, so the switch
#                is seamless; run again without --new-ca after the rollout to drop the old one
#   --dir        where keys and certificates are kept (default deploy/certs/out, mode 0700);
#                ca.key there signs future certificates: keep it as safe as a cluster credential
#   --days       serving certificate lifetime in days (default 365); --ca-days: CA (default 3650)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
namespace=twostep-system
service=twostep-webhook
secret=twostep-webhook-tls
webhook=twostep
dir=$here/out
patch=$deploy/components/generated-certs/cabundle.patch.yaml
days=365
ca_days=3650
apply=1
new_ca=0

fail() { echo "generate.sh: $*" >&2; exit 1; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || fail "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
    --no-apply) apply=0 ;;
    --new-ca) new_ca=1 ;;
    --dir) need_value "$@"; dir=$2; shift ;;
    --days) need_value "$@"; days=$2; shift ;;
    --ca-days) need_value "$@"; ca_days=$2; shift ;;
    --namespace) need_value "$@"; namespace=$2; shift ;;
    --service) need_value "$@"; service=$2; shift ;;
    --secret) need_value "$@"; secret=$2; shift ;;
    --patch) need_value "$@"; patch=$2; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "generate.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $days$ca_days in *[!0-9]*) fail "--days and --ca-days take a whole number of days" ;; esac
[ "$days" -gt 0 ] && [ "$ca_days" -gt 0 ] || fail "--days and --ca-days must be positive"
command -v openssl >/dev/null 2>&1 || fail "openssl is not installed"
if [ "$apply" -eq 1 ]; then
  command -v kubectl >/dev/null 2>&1 || fail "kubectl is not on PATH (or use --no-apply)"
fi

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The CA: reuse the one in $dir unless asked for a new one.
if [ "$new_ca" -eq 0 ] && [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ]; then
  ca_pub=$(openssl x509 -in "$dir/ca.crt" -noout -pubkey) || fail "cannot read $dir/ca.crt"
  key_pub=$(openssl pkey -in "$dir/ca.key" -pubout) || fail "cannot read $dir/ca.key"
  [ "$ca_pub" = "$key_pub" ] || fail "$dir/ca.key does not belong to $dir/ca.crt"
  openssl x509 -in "$dir/ca.crt" -noout -checkend $((days * 86400)) >/dev/null ||
    fail "the CA in $dir ends within $days days; run with --new-ca"
  echo "reusing the CA in $dir"
else
  if [ -f "$dir/ca.crt" ]; then
    mv "$dir/ca.crt" "$dir/ca-previous.crt"
    rm -f "$dir/ca.key"
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$ca_days" \
    -subj "/CN=twostep-webhook-ca" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
  echo "made a new CA in $dir"
fi

# 2. The serving certificate (a new key every time).
dns1=$service
dns2=$service.$namespace
dns3=$service.$namespace.svc
dns4=$service.$namespace.svc.cluster.local
cat >"$work/ext.cnf" <<EOF
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$dns1,DNS:$dns2,DNS:$dns3,DNS:$dns4
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/tls.key" 2>/dev/null
openssl req -new -key "$work/tls.key" -subj "/CN=$dns3" -out "$work/tls.csr"
openssl x509 -req -in "$work/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
  -extfile "$work/ext.cnf" -extensions serving -out "$work/tls.crt" 2>/dev/null
openssl verify -CAfile "$dir/ca.crt" "$work/tls.crt" >/dev/null ||
  fail "the new serving certificate does not verify against the CA"
mv "$work/tls.key" "$dir/tls.key"
mv "$work/tls.crt" "$dir/tls.crt"
echo "made the serving certificate for $dns1, $dns2, $dns3, $dns4 ($days days)"

# 3. The caBundle: the CA, plus the previous CA while it is still valid (a CA rotation).
cp "$dir/ca.crt" "$work/bundle.pem"
if [ -f "$dir/ca-previous.crt" ]; then
  if [ "$new_ca" -eq 1 ] && openssl x509 -in "$dir/ca-previous.crt" -noout -checkend 0 >/dev/null; then
    cat "$dir/ca-previous.crt" >>"$work/bundle.pem"
    echo "the caBundle keeps the previous CA too; run again without --new-ca once rolled out"
  else
    rm -f "$dir/ca-previous.crt"
  fi
fi
bundle=$(openssl base64 -A -in "$work/bundle.pem")
json_patch() {
  for i in 0 1 2; do
    printf '%s{"op":"add","path":"/webhooks/%s/clientConfig/caBundle","value":"%s"}' \
      "$([ "$i" -eq 0 ] && echo '[' || echo ',')" "$i" "$bundle"
  done
  echo ']'
}
mkdir -p "$(dirname "$patch")"
{
  echo "# Written by deploy/certs/generate.sh: the CA bundle of the webhook's serving certificate."
  json_patch
} >"$patch.tmp"
chmod 0644 "$patch.tmp"
mv "$patch.tmp" "$patch"
echo "wrote $patch"

secret_manifest() {
  kubectl create secret tls "$secret" --namespace "$namespace" \
    --cert="$dir/tls.crt" --key="$dir/tls.key" --dry-run=client -o yaml
}

if [ "$apply" -eq 0 ]; then
  crt64=$(openssl base64 -A -in "$dir/tls.crt")
  key64=$(openssl base64 -A -in "$dir/tls.key")
  cat >"$dir/tls-secret.yaml" <<EOF
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: $secret
  namespace: $namespace
data:
  tls.crt: $crt64
  tls.key: $key64
EOF
  echo "wrote $dir/tls-secret.yaml; apply it with: kubectl apply -f $dir/tls-secret.yaml"
  echo "then: kubectl apply -k <your overlay with the generated-certs component>"
  exit 0
fi

# 3 (live). Existing webhook configurations get the new bundle before the Secret changes.
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  if kubectl get "$kind" "$webhook" >/dev/null 2>&1; then
    kubectl patch "$kind" "$webhook" --type=json -p "$(json_patch)" >/dev/null ||
      fail "kubectl patch $kind $webhook failed"
    echo "patched the caBundle of $kind/$webhook"
  fi
done

# 4. The namespace (if missing) and the Secret.
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null ||
  fail "cannot create namespace $namespace"
secret_manifest | kubectl apply -f - >/dev/null || fail "cannot apply secret $namespace/$secret"
echo "applied secret $namespace/$secret; the webhook picks the new certificate up while running"
echo "next: kubectl apply -k <your overlay with the generated-certs component>"
