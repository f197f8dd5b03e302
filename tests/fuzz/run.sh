#!/usr/bin/env bash
# Builds the libFuzzer targets with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# (build/fuzz) and fuzzes each target for SECONDS (default 20), starting from its seed corpus.
# Fails when any target finds a crash or a broken property; the input is then kept in
# build/fuzz/crashes/<target>/ (copy it to tests/fuzz/regressions/<target>/, see README.md).
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]     (docs/benchmarks.md: the longer run)
set -euo pipefail
seconds=${1:-20}
shift || true
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TWOSTEP_FUZZ_BUILD:-$root/build/fuzz}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(review strip_patch base32 otpauth http_request)

flags="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link"
flags+=" -fno-sanitize-recover=all"
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DTWOSTEP_BUILD_FUZZ=ON -DTWOSTEP_BUILD_BENCH=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" >/dev/null

failed=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target       # grows with what the fuzzer finds; the seeds stay as they are
  crashes=$build/crashes/$target
  mkdir -p "$corpus" "$crashes"
  dict=()
  [[ $target == review || $target == strip_patch ]] && dict=(-dict="$root/tests/fuzz/review.dict")
  [[ $target == http_request ]] && dict=(-dict="$root/tests/fuzz/http.dict")
  echo "fuzzing $target for ${seconds}s"
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
      "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=16384 -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" \
      "$corpus" "$root/tests/fuzz/corpus/$target" >"$build/fuzz-$target.log" 2>&1; then
    failed+=("$target")
    echo "FAILED: $target found a crash; log $build/fuzz-$target.log, input in $crashes/" >&2
    grep -E 'ERROR|property violated|SUMMARY' "$build/fuzz-$target.log" | head -5 >&2 || true
    continue
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$build/fuzz-$target.log" |
    tr '\n' ' '
  echo
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing found no crash in ${targets[*]} (${seconds}s each)"
