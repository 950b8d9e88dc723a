#!/bin/sh
# Builds the libFuzzer targets with clang into build-fuzz and runs each for N
# seconds (default 60, first argument overrides) on a copy of its seed corpus in
# tests/fuzz/corpus/<target>/. Prints execs/s and coverage per target; exits
# non-zero if any target crashed, leaked or hung (the input is kept and named).
set -eu
cd "$(dirname "$0")/../.."
SECS="${1:-60}"
case "$SECS" in
'' | *[!0-9]*)
    echo "usage: $0 [seconds]" >&2
    exit 2
    ;;
esac
TARGETS="cmd data reply sasl conf cidr proxy spool rewrite metrics tls_name dsn graph"

sh tests/deps.sh
missing=""
for p in clang libclang-rt-14-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "relay25: installing:$missing" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRELAY25_FUZZ=ON >/dev/null
# shellcheck disable=SC2046
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" $(for t in $TARGETS; do printf -- '--target fuzz_%s ' "$t"; done)

BIN="$PWD/build-fuzz/tests/fuzz"
OUT="$PWD/build-fuzz/fuzz-run"
FAILED=0
REPORT=""
JOBS=$(nproc 2>/dev/null || echo 2)

# One target for SECS seconds in its own directory; its exit status in $dir/rc.
fuzz_one() {
    t=$1
    dir="$OUT/$t"
    rm -rf "$dir/corpus" "$dir/log" "$dir/rc"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
    # Replies, config files and HTTP heads (431 past 4096) are longer than a command
    # line: allow bigger inputs.
    case "$t" in
    reply | conf | data | spool | metrics) maxlen=8192 ;;
    *) maxlen=4096 ;;
    esac
    echo "fuzz_$t: ${SECS}s ..." >&2
    rc=0
    (cd "$dir" && "$BIN/fuzz_$t" -max_total_time="$SECS" -max_len="$maxlen" \
        -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" corpus >log 2>&1) || rc=$?
    echo "$rc" >"$dir/rc"
}

# the targets are single-threaded: as many at once as there are CPUs
n=0
for t in $TARGETS; do
    fuzz_one "$t" &
    n=$((n + 1))
    if [ "$n" -ge "$JOBS" ]; then
        wait
        n=0
    fi
done
wait

for t in $TARGETS; do
    dir="$OUT/$t"
    rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: ... exec/s: E rss: ..."
    last=$(grep -E '^#[0-9]+.*cov: ' "$dir/log" | tail -n 1 || true)
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    eps=$(printf '%s\n' "$last" | sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p')
    [ -n "$eps" ] || eps=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$dir/log")
    status=ok
    if [ "$rc" -ne 0 ]; then
        status="FAILED (exit $rc)"
        FAILED=1
        kept=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$dir/log" | tr '\n' ' ')
        status="$status ${kept:-(no input written)}"
        echo "fuzz_$t failed; log: $dir/log" >&2
        grep -E 'ERROR|invariant failed|SUMMARY' "$dir/log" | head -n 5 >&2 || true
    fi
    REPORT="$REPORT$(printf '%-12s %10s %8s  %s' "fuzz_$t" "${eps:-?}" "${cov:-?}" "$status")
"
done

printf '\n%-12s %10s %8s  %s\n' target "exec/s" "cov" status
printf '%s' "$REPORT"
exit "$FAILED"
