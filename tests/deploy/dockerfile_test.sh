#!/usr/bin/env bash
# Offline checks of the Dockerfile (no Docker engine runs on our machines):
#  1. every shared library the built binaries load (ldd) belongs to a Debian package (dpkg -S)
#     that the runtime stage installs: a package of `scripts/install-deps.sh runtime`, or one of
#     their installed dependencies (apt-cache depends --recurse --installed);
#  2. the Dockerfile's shape: two stages on debian:12 / debian:12-slim, both installing through
#     scripts/install-deps.sh, a numeric non-root USER, the volume, the port, an ENTRYPOINT whose
#     flags the built webhook accepts, no piping of downloads into a shell;
#  3. the build context that .dockerignore leaves configures with the release preset.
# Usage: dockerfile_test.sh SOURCE_DIR WEBHOOK_BINARY ENROLL_BINARY
set -euo pipefail

src=${1:?source dir}
webhook=${2:?twostep-webhook path}
enroll=${3:?twostep-enroll path}
dockerfile=$src/Dockerfile

failures=0
passes=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { passes=$((passes + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass; else fail "$what"; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- 1. shared libraries come from the runtime packages ----
mapfile -t runtime < <("$src/scripts/install-deps.sh" --list runtime)
(( ${#runtime[@]} > 0 )) || fail "scripts/install-deps.sh --list runtime printed nothing"
# The closure: the runtime packages and every installed package they depend on.
declare -A closure=()
while read -r pkg; do
  closure[${pkg%%:*}]=1
done < <(apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances "${runtime[@]}" | grep -v '^ ' | grep -v '^<')
for pkg in "${runtime[@]}"; do
  [[ -n ${closure[$pkg]:-} ]] || fail "runtime package $pkg is not installed here (install-deps.sh runtime)"
done

owner() { # the package that ships a library path (merged /usr: the path may be recorded either way)
  local path=$1 real candidates
  real=$(readlink -f "$path")
  candidates=("$path" "$real")
  for p in "$path" "$real"; do
    case $p in
      /usr/lib/*) candidates+=("${p#/usr}") ;;
      /lib/*|/lib64/*) candidates+=("/usr$p") ;;
    esac
  done
  for p in "${candidates[@]}"; do
    local out
    if out=$(dpkg -S "$p" 2>/dev/null); then
      echo "${out%%:*}" | cut -d, -f1
      return 0
    fi
  done
  return 1
}

for binary in "$webhook" "$enroll"; do
  [[ -x $binary ]] || { fail "$binary is not an executable"; continue; }
  ldd_out=$(ldd "$binary") || { fail "ldd $binary failed"; continue; }
  if grep -q "not found" <<<"$ldd_out"; then
    fail "$(basename "$binary"): unresolved libraries: $(grep "not found" <<<"$ldd_out" | tr -s ' \t' ' ')"
  fi
  libs=0
  while read -r path; do
    name=$(basename "$path")
    case $name in
      # Sanitizer runtimes come only with the asan preset; the image builds the release preset.
      libasan.so.*|libubsan.so.*|liblsan.so.*|libtsan.so.*)
        echo "note: $(basename "$binary") links $name (sanitizer build); the release image does not"
        continue ;;
    esac
    libs=$((libs + 1))
    if ! pkg=$(owner "$path"); then
      fail "$(basename "$binary"): no Debian package owns $path"
      continue
    fi
    if [[ -n ${closure[$pkg]:-} ]]; then
      pass
    else
      fail "$(basename "$binary"): $name comes from $pkg, which the runtime stage does not install (add it to runtime in scripts/install-deps.sh)"
    fi
  done < <(awk '/=>/ && $3 ~ /^\// { print $3 } !/=>/ && $1 ~ /^\// { print $1 }' <<<"$ldd_out")
  (( libs >= 5 )) || fail "$(basename "$binary"): ldd listed only $libs libraries; is it the real binary?"
done

# ---- 2. the Dockerfile's shape ----
[[ -f $dockerfile ]] || { fail "no Dockerfile at $dockerfile"; echo "0 passed, $failures failed"; exit 1; }
# Instructions with continuation lines joined, comments dropped.
instructions=$(sed -e '/^[[:space:]]*#/d' "$dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')
froms=$(grep -E '^FROM ' <<<"$instructions" || true)
check "two FROM stages (build and runtime), found: $(wc -l <<<"$froms")" \
  test "$(grep -c . <<<"$froms")" -eq 2
check "the build stage is debian:12 (FROM debian:12 AS build)" \
  grep -qE '^FROM debian:12 AS build$' <<<"$froms"
check "the runtime stage is debian:12-slim (the last FROM)" \
  grep -qE '^FROM debian:12-slim$' <<<"$(tail -n1 <<<"$froms")"
build_stage=$(awk '/^FROM /{n++} n==1' <<<"$instructions")
runtime_stage=$(awk '/^FROM /{n++} n==2' <<<"$instructions")
check "the build stage installs with scripts/install-deps.sh build" \
  grep -qE '^RUN .*install-deps\.sh build' <<<"$build_stage"
check "the build stage builds with the release preset" \
  grep -qE 'cmake --preset release' <<<"$build_stage"
check "the runtime stage installs with install-deps.sh runtime" \
  grep -qE '^RUN .*install-deps\.sh runtime' <<<"$runtime_stage"
check "the runtime stage removes the apt lists" \
  grep -qE 'rm -rf [^&]*/var/lib/apt/lists' <<<"$runtime_stage"
check "no apt-get install outside install-deps.sh (one list of packages)" \
  bash -c '! grep -qE "apt-get( -[a-z]+)* install" <<<"$1"' _ "$instructions"
check "no download piped into a shell (curl|sh, wget|sh)" \
  bash -c '! grep -qE "(curl|wget)[^|]*\|[[:space:]]*(ba|da)?sh" <<<"$1"' _ "$instructions"
check "no ADD of a URL" \
  bash -c '! grep -qE "^ADD +(--[^ ]+ +)*https?://" <<<"$1"' _ "$instructions"
user=$(grep -E '^USER ' <<<"$runtime_stage" | tail -n1 | awk '{print $2}')
check "USER is numeric uid[:gid] (runAsNonRoot checks the number), found '$user'" \
  grep -qE '^[0-9]+(:[0-9]+)?$' <<<"$user"
check "USER is not root, found '$user'" test "${user%%:*}" != 0
check "USER is uid 65532 as deploy/ expects, found '$user'" test "${user%%:*}" = 65532
for bin in twostep-webhook twostep-enroll kubectl-twostep; do
  check "the runtime stage copies $bin from the build stage" \
    grep -qE "^COPY --from=build .*/$bin( |$)" <<<"$runtime_stage"
done
check "/usr/local/bin is where the binaries land" \
  grep -qE '^COPY --from=build .* /usr/local/bin/$' <<<"$runtime_stage"
check "the database directory is a volume" grep -qE '^VOLUME .*/var/lib/twostep' <<<"$runtime_stage"
check "EXPOSE 8443" grep -qE '^EXPOSE 8443$' <<<"$runtime_stage"
entrypoint=$(grep -E '^ENTRYPOINT ' <<<"$runtime_stage" | tail -n1)
cmd=$(grep -E '^CMD ' <<<"$runtime_stage" | tail -n1)
check "ENTRYPOINT runs /usr/local/bin/twostep-webhook (exec form)" \
  grep -qE '^ENTRYPOINT \["/usr/local/bin/twostep-webhook"' <<<"$entrypoint"
for want in --tls-cert=/etc/twostep/tls/tls.crt --tls-key=/etc/twostep/tls/tls.key \
            --master-key-file=/etc/twostep/master.key --listen=0.0.0.0:8443; do
  check "ENTRYPOINT passes $want" grep -qF "\"$want\"" <<<"$entrypoint"
done
check "CMD keeps the database on the volume" grep -qF '"--db=/var/lib/twostep/' <<<"$cmd"
# Every flag the image passes must be one the built webhook knows.
help=$("$webhook" --help 2>&1 || true)
for flag in $(grep -oE '"--[a-z-]+' <<<"$entrypoint $cmd" | tr -d '"'); do
  check "twostep-webhook --help lists $flag (used by the image)" grep -qE -- "(^|[[:space:]])$flag(=|[[:space:]]|$)" <<<"$help"
done
# Read-only root filesystem: the image writes nowhere at run time but the volume and /tmp; the
# only directory it prepares for writing is the database's, owned by the user.
check "the database directory belongs to uid 65532" \
  grep -qE 'install -d -o 65532 -g 65532 [^&]*/var/lib/twostep' <<<"$runtime_stage"

# ---- 3. the build context .dockerignore leaves is enough to configure the release build ----
ignore=$src/.dockerignore
if [[ ! -f $ignore ]]; then
  fail "no .dockerignore"
else
  for must in .git build/ '**/*.key' '**/*.db'; do
    check ".dockerignore excludes $must" grep -qxF -- "$must" "$ignore"
  done
  ctx=$work/context
  mkdir -p "$ctx"
  top=() deep=()
  while read -r pattern; do
    case $pattern in
      ''|'#'*) ;;
      '**/'*) deep+=("${pattern#'**/'}") ;;
      */*[!/]*|*'*'*/*) fail ".dockerignore pattern '$pattern' is not one this check understands" ;;
      *) top+=("${pattern%/}") ;;
    esac
  done <"$ignore"
  shopt -s dotglob nullglob
  for entry in "$src"/*; do
    name=$(basename "$entry")
    skip=0
    for pattern in "${top[@]}"; do
      # shellcheck disable=SC2053 # the pattern is a glob on purpose
      [[ $name == $pattern ]] && skip=1
    done
    (( skip )) || cp -a "$entry" "$ctx/"
  done
  shopt -u dotglob nullglob
  for pattern in "${deep[@]}"; do
    find "$ctx" -name "$pattern" -exec rm -rf {} +
  done
  # Configure exactly as the Dockerfile's build stage does (.dockerignore leaves out bench/).
  configure=$(grep -oE 'cmake --preset release[^\\&]*' "$dockerfile" | head -n 1)
  if (cd "$ctx" && $configure >"$work/configure.log" 2>&1); then
    pass
  else
    fail "'$configure' does not configure in the Docker build context:"
    tail -n 20 "$work/configure.log"
  fi
fi

echo "dockerfile: $passes passed, $failures failed"
(( failures == 0 ))
