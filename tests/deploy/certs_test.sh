#!/usr/bin/env bash
# Runs deploy/certs/generate.sh against a fake kubectl that records what it is asked (and answers
# `create --dry-run=client` with the real kubectl, offline), then checks with openssl: the chain
# verifies, the SANs are exactly the Service's names, the keys are private, the Secret applied is
# the certificate made, the caBundle patch holds the CA, a second run reuses the CA, --new-ca keeps
# the previous CA in the bundle, and a live webhook configuration is patched before the Secret.
# Usage: certs_test.sh SOURCE_DIR
set -euo pipefail

src=${1:?source dir}
passes=0
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null; then passes=$((passes + 1)); else fail "$what"; fi
}

real_kubectl=$(command -v kubectl || true)
if [[ -z $real_kubectl ]]; then
  echo "FAIL: kubectl is not on PATH; scripts/install-deps.sh test installs it (scripts/install-kubectl.sh)"
  exit 1
fi
command -v openssl >/dev/null || { echo "FAIL: openssl is not installed"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/deploy" "$work/deploy"
rm -rf "$work/deploy/certs/out" "$work/deploy/components/generated-certs/cabundle.patch.yaml"
gen=$work/deploy/certs/generate.sh
out=$work/deploy/certs/out
patch=$work/deploy/components/generated-certs/cabundle.patch.yaml

# The fake kubectl: logs every call; `apply -f -` input goes to numbered files.
mkdir -p "$work/bin" "$work/calls"
cat >"$work/bin/kubectl" <<'EOF'
#!/bin/sh
n=$(($(wc -l <"$FAKE_DIR/log") + 1))
printf '%s %s\n' "$n" "$*" >>"$FAKE_DIR/log"
case " $* " in
  *" --dry-run=client "*) KUBECONFIG=/nonexistent exec "$REAL_KUBECTL" "$@" ;;
  *" apply -f - "*) cat >"$FAKE_DIR/apply.$n.yaml" ;;
  " get "*) case " $FAKE_EXISTING " in *" $2 "*) exit 0 ;; esac
            echo "Error from server (NotFound): $2 \"$3\" not found" >&2; exit 1 ;;
  " patch "*) exit 0 ;;
  *) echo "fake kubectl: unexpected call: $*" >&2; exit 1 ;;
esac
EOF
chmod +x "$work/bin/kubectl"
run_gen() { # run_gen [FAKE_EXISTING] -- ARGS...
  local existing=$1; shift
  : >"$work/calls/log"
  rm -f "$work/calls"/apply.*.yaml
  PATH="$work/bin:$PATH" FAKE_DIR="$work/calls" REAL_KUBECTL="$real_kubectl" \
    FAKE_EXISTING="$existing" sh "$gen" "$@" >"$work/gen.out" 2>&1
}
bundle_of_patch() { # the caBundle values in the patch file, one a line
  grep -o 'caBundle","value":"[^"]*"' "$patch" | sed 's/.*"value":"//; s/"$//'
}
pem_count() { grep -c 'BEGIN CERTIFICATE' || true; }

# ---- a first run, nothing in the cluster yet ----
if ! run_gen "" ; then
  fail "generate.sh failed:"; cat "$work/gen.out"
  echo "certs: $passes passed, $failures failed"; exit 1
fi
check "ca.crt, ca.key, tls.crt, tls.key written" test -s "$out/ca.crt" -a -s "$out/ca.key" -a -s "$out/tls.crt" -a -s "$out/tls.key"
check "the output directory is private (0700)" test "$(stat -c %a "$out")" = 700
for f in ca.key tls.key; do
  check "$f is private (0600)" test "$(stat -c %a "$out/$f")" = 600
done
check "the serving certificate verifies against the CA" \
  openssl verify -CAfile "$out/ca.crt" "$out/tls.crt"
sans=$(openssl x509 -in "$out/tls.crt" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')
check "SANs are exactly the Service's names, got: $sans" test "$sans" = \
  "DNS:twostep-webhook,DNS:twostep-webhook.twostep-system,DNS:twostep-webhook.twostep-system.svc,DNS:twostep-webhook.twostep-system.svc.cluster.local"
check "the serving certificate is for serverAuth" \
  grep -q "TLS Web Server Authentication" <(openssl x509 -in "$out/tls.crt" -noout -ext extendedKeyUsage)
check "the serving certificate is not a CA" \
  grep -q "CA:FALSE" <(openssl x509 -in "$out/tls.crt" -noout -ext basicConstraints)
check "the CA certificate is a CA" \
  grep -q "CA:TRUE" <(openssl x509 -in "$out/ca.crt" -noout -ext basicConstraints)
check "tls.key belongs to tls.crt" \
  test "$(openssl x509 -in "$out/tls.crt" -noout -pubkey)" = "$(openssl pkey -in "$out/tls.key" -pubout)"
check "the serving certificate is valid for about a year" \
  openssl x509 -in "$out/tls.crt" -noout -checkend $((360 * 86400))
check "and not for more than 365 days" \
  bash -c '! openssl x509 -in "$1" -noout -checkend $((366 * 86400)) >/dev/null' _ "$out/tls.crt"

ca64=$(openssl base64 -A -in "$out/ca.crt")
mapfile -t bundles < <(bundle_of_patch)
check "the patch sets a caBundle on the three webhook entries" test "${#bundles[@]}" -eq 3
for i in 0 1 2; do
  check "caBundle of webhook $i is the CA" test "${bundles[$i]:-}" = "$ca64"
  check "the patch targets /webhooks/$i/clientConfig/caBundle" \
    grep -q "\"path\":\"/webhooks/$i/clientConfig/caBundle\"" "$patch"
done

log=$(cat "$work/calls/log")
check "asked whether the webhook configurations exist" \
  grep -q "get mutatingwebhookconfiguration twostep" <<<"$log"
check "no patch of a configuration that does not exist" bash -c '! grep -q " patch " <<<"$1"' _ "$log"
check "created the Secret with kubectl create secret tls --dry-run=client" \
  grep -qE "create secret tls twostep-webhook-tls --namespace twostep-system --cert=$out/tls.crt --key=$out/tls.key --dry-run=client -o yaml" <<<"$log"
secret_file=$(grep -l "kind: Secret" "$work/calls"/apply.*.yaml 2>/dev/null | head -n1 || true)
if check "applied a Secret through kubectl apply -f -" test -n "$secret_file"; then
  check "the Secret is kubernetes.io/tls" grep -q "type: kubernetes.io/tls" "$secret_file"
  check "the Secret is twostep-system/twostep-webhook-tls" \
    grep -qE "^  name: twostep-webhook-tls$" "$secret_file"
  check "in namespace twostep-system" grep -qE "^  namespace: twostep-system$" "$secret_file"
  applied_crt=$(sed -n 's/^  tls.crt: //p' "$secret_file" | openssl base64 -d -A)
  check "the applied tls.crt is the certificate made" test "$applied_crt" = "$(cat "$out/tls.crt")"
fi
check "the namespace is created if missing" \
  grep -q "kind: Namespace" <(cat "$work/calls"/apply.*.yaml)

# ---- a renewal reuses the CA: the caBundle does not change ----
cp "$out/ca.crt" "$work/ca.first"
cp "$out/tls.crt" "$work/tls.first"
check "a second run succeeds" run_gen ""
check "the CA is reused" cmp -s "$out/ca.crt" "$work/ca.first"
check "the serving certificate is new" bash -c '! cmp -s "$1" "$2"' _ "$out/tls.crt" "$work/tls.first"
mapfile -t bundles < <(bundle_of_patch)
check "the caBundle is unchanged" test "${bundles[0]:-}" = "$ca64"

# ---- live configurations are patched before the Secret changes ----
check "a run with the mutating configuration present succeeds" run_gen "mutatingwebhookconfiguration"
log=$(cat "$work/calls/log")
patch_line=$(grep " patch mutatingwebhookconfiguration twostep --type=json" <<<"$log" | cut -d' ' -f1 | head -n1)
secret_line=$(grep " create secret tls" <<<"$log" | cut -d' ' -f1 | head -n1)
check "kubectl patch of the live mutating configuration" test -n "$patch_line"
check "the patch comes before the Secret (the API server trusts the new CA first)" \
  test "${patch_line:-99}" -lt "${secret_line:-0}"
check "the live patch carries the caBundle" grep -qF "\"value\":\"$ca64\"" <<<"$log"
check "the validating configuration (absent) is not patched" \
  bash -c '! grep -q " patch validatingwebhookconfiguration" <<<"$1"' _ "$log"

# ---- --new-ca: the bundle holds the new and the previous CA ----
check "a run with --new-ca succeeds" run_gen "" --new-ca
check "the CA is new" bash -c '! cmp -s "$1" "$2"' _ "$out/ca.crt" "$work/ca.first"
check "the new serving certificate verifies against the new CA" \
  openssl verify -CAfile "$out/ca.crt" "$out/tls.crt"
mapfile -t bundles < <(bundle_of_patch)
both=$(openssl base64 -d -A <<<"${bundles[0]:-}")
check "the caBundle holds two CAs during the rotation" test "$(pem_count <<<"$both")" -eq 2
check "one of them is the previous CA" grep -qF "$(sed -n 2p "$work/ca.first")" <<<"$both"
check "a run without --new-ca afterwards succeeds" run_gen ""
mapfile -t bundles < <(bundle_of_patch)
check "then the caBundle holds only the new CA" \
  test "$(openssl base64 -d -A <<<"${bundles[0]:-}" | pem_count)" -eq 1

# ---- --no-apply needs no kubectl at all; bad input is refused ----
# A PATH with the tools generate.sh uses and no kubectl.
mkdir -p "$work/nokubectl"
for tool in sh dirname mkdir chmod mktemp rm mv cat cp sed openssl; do
  ln -s "$(command -v "$tool")" "$work/nokubectl/$tool"
done
rm -rf "$out"
check "--no-apply works without kubectl on PATH" \
  env PATH="$work/nokubectl" sh "$gen" --no-apply
check "--no-apply writes a Secret manifest" grep -q "type: kubernetes.io/tls" "$out/tls-secret.yaml"
check "that manifest holds the certificate made" test \
  "$(sed -n 's/^  tls.crt: //p' "$out/tls-secret.yaml" | openssl base64 -d -A)" = "$(cat "$out/tls.crt")"
check "without kubectl (and without --no-apply) it fails" \
  bash -c '! env PATH="$2" sh "$1" >/dev/null 2>&1' _ "$gen" "$work/nokubectl"
check "--days must be a number" bash -c '! sh "$1" --no-apply --days 1y >/dev/null 2>&1' _ "$gen"
check "an unknown option is a usage error (2)" \
  bash -c 'sh "$1" --bogus >/dev/null 2>&1; test $? -eq 2' _ "$gen"
cp "$out/ca.crt" "$work/ca.keep"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key" 2>/dev/null
check "a CA key that does not match ca.crt is refused" \
  bash -c '! sh "$1" --no-apply >"$2" 2>&1 && grep -q "does not belong" "$2"' _ "$gen" "$work/err"

echo "certs: $passes passed, $failures failed"
(( failures == 0 ))
