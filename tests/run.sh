#!/bin/sh
# The whole test suite: unit and integration tests (ctest) on a normal build,
# then again on an ASan+UBSan build (leaks included). Exit status = pass/fail.
set -eu
cd "$(dirname "$0")/.."
sh tests/deps.sh
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build build-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS"
