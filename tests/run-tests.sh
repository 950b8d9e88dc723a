#!/bin/sh
# The whole test suite: unit and integration tests (ctest) on a normal build,
# then again on an ASan+UBSan build (leaks included). Exit status = pass/fail.
set -eu
cd "$(dirname "$0")/.."
# test peers: HAProxy (PROXY protocol), clang + libFuzzer (fuzz targets)
sh tests/deps.sh haproxy clang libclang-rt-14-dev
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build build-asan -j "$JOBS"
# the container image test builds the same sources again: once is enough
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" -E docker

# every fuzz target for a bounded time (RELAY25_FUZZ_SECONDS, default 30)
sh tests/fuzz/run.sh "${RELAY25_FUZZ_SECONDS:-30}"

# one closing line for CI: everything above passed (set -e stops at the first failure)
n1=$(ctest --test-dir build -N | sed -n 's/^Total Tests: *//p')
n2=$(ctest --test-dir build-asan -N -E docker | sed -n 's/^Total Tests: *//p')
n3=$(sed -n 's/^TARGETS="\(.*\)"$/\1/p' tests/fuzz/run.sh | wc -w)
echo "suite: $((n1 + n2 + n3)) passed, 0 failed"
