#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo fuzz, libFuzzer) for a bounded time
# each and prints executions, time and crashes per target. Fails if any
# target crashes; the input that crashed is in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Default: 20 s for every target (what .ci/run does). Each run starts from
# fuzz/regressions/<target>/ (inputs that once crashed: each must pass),
# fuzz/seeds/<target>/ (synthetic examples) and the corpus of earlier runs
# (fuzz/corpus/, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

seconds=${1:-20}
shift || true
[[ "$seconds" =~ ^[0-9]+$ ]] || die "seconds per target must be a number, not '$seconds'"

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install --locked cargo-fuzz || die "cannot install cargo-fuzz"
fi
# libFuzzer's instrumentation needs nightly flags: the nightly toolchain if
# it is installed, else the stable one with RUSTC_BOOTSTRAP.
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    say "no nightly toolchain: building with RUSTC_BOOTSTRAP=1 on $(rustc --version)"
    export RUSTC_BOOTSTRAP=1
    toolchain=()
fi

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
say "building ${#targets[@]} fuzz targets"
cargo "${toolchain[@]}" fuzz build -O >&2 || die "the fuzz targets do not build"

summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    inputs=("corpus/$t")
    for d in "regressions/$t" "seeds/$t"; do
        [ -d "$d" ] && inputs+=("$d")
    done
    say "fuzzing $t for ${seconds}s"
    log=$(mktemp)
    set +e
    cargo "${toolchain[@]}" fuzz run -O "$t" "${inputs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        failed=1
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -n 20 "$log" >&2
        summary+=("$(printf '%-20s %12s %6ss  CRASHED' "$t" "${runs:-?}" "${took:-?}")")
    else
        summary+=("$(printf '%-20s %12s %6ss  0 crashes' "$t" "${runs:-?}" "${took:-?}")")
    fi
    rm -f "$log"
done

printf '\n%-20s %12s %7s  %s\n' target executions time result
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ] || die "a fuzz target crashed (inputs in fuzz/artifacts/)"
