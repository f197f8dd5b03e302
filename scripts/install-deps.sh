#!/bin/sh
# Installs the Debian 12 packages twostep needs to build, test and run; installs only what is
# missing, so it is cheap to call on every build. Usage: scripts/install-deps.sh [build|test|demo|runtime]
# (`--list PROFILE` prints the profile's packages, one a line, and installs nothing.)
set -eu
list=0
if [ "${1:-}" = --list ]; then list=1; shift; fi
profile=${1:-test}

build="cmake g++ make pkg-config ca-certificates libpoco-dev libssl-dev liboath-dev libsqlitecpp-dev
  libsqlite3-dev nlohmann-json3-dev libqrencode-dev libsimdjson-dev prometheus-cpp-dev libpqxx-dev"
# Real peers the tests start: oathtool (an independent TOTP), zbarimg (decodes our QR PNGs),
# openssl (certificates), sqlite3 (integrity checks), curl (the walk-through), clang (fuzzers),
# wrk (short load runs), postgresql (the second store backend), python3-yaml (reads the rendered
# deploy manifests), shellcheck and bsdutils' script (the kubectl plugin's lint and pty test),
# etcd-server (the end-to-end suite's kube-apiserver stores in it). kubectl, which Debian does
# not package, comes from scripts/install-kubectl.sh; kube-apiserver from KUBE_APISERVER.
test="$build catch2 oathtool zbar-tools openssl sqlite3 curl python3 clang libclang-rt-14-dev wrk
  postgresql procps python3-yaml shellcheck bsdutils etcd-server"
# runtime: what the image's binaries load, plus sqlite3 for online backups (`.backup`, docs/operations.md).
runtime="libpocofoundation80 libpoconet80 libpoconetssl80 libpocoutil80 libpococrypto80 libssl3
  liboath0 libsqlite3-0 libqrencode4 libsimdjson14 libprometheus-cpp-core1.0
  libpqxx-6.4 ca-certificates sqlite3"

case $profile in
  build) want=$build ;;
  test) want=$test ;;
  demo) want="$build oathtool openssl curl" ;;
  runtime) want=$runtime ;;
  *) echo "usage: $0 [--list] [build|test|demo|runtime]" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086 # one package a line
if [ "$list" -eq 1 ]; then printf '%s\n' $want; exit 0; fi

missing=""
for pkg in $want; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
# kubectl (and the kustomize inside it) renders deploy/ in the tests: no Debian package has it.
kubectl_step() {
  [ "$profile" = test ] || return 0
  "$(dirname "$0")/install-kubectl.sh"
}
if [ -z "$missing" ]; then kubectl_step; exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages:$missing; run this script as root (or install them with apt-get)" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
kubectl_step
