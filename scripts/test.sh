#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the README's test command and CI's.
# Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
[[ ${1:-} == --no-asan ]] && asan=0

scripts/install-deps.sh test

# Warnings are errors in this build (preset "ci"); every test runs through ctest. ctest runs
# next to a throwaway PostgreSQL server (loopback, removed afterwards) for the tests labelled
# postgres, which fail without it.
scripts/with-postgres.sh cmake --workflow --preset ci

if (( asan )); then
  # The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
  scripts/with-postgres.sh cmake --workflow --preset asan
fi

# libFuzzer targets (clang, ASan+UBSan) from their seed corpora, 15 s each; fails on any crash
# (tests/fuzz/README.md has the longer run).
tests/fuzz/run.sh "${TWOSTEP_FUZZ_SECONDS:-15}"
echo "all tests passed"
