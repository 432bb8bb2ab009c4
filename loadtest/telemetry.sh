#!/usr/bin/env bash
# Verify throughput with telemetry off, and with OTLP export switched on
# towards a collector that is not there (a closed loopback port): the
# configuration where a slow or failing export could steal time from
# calls. Runs in adjacent pairs, the order alternating between rounds (off
# then unreachable, then unreachable then off, ...), so the drift of the
# machine's speed falls on both alike; prints each pair's ratio and their
# median (the figure to quote: pairs are minutes apart, rounds are not).
#
# Usage: bash loadtest/telemetry.sh [ROUNDS]   (default 3; PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
profile=${PROFILE:-release}
case "$profile" in
    release) bin=target/release ;;
    dev) bin=target/debug ;;
    *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
cargo build -q --profile "$profile" -p ekyc-service --bin ekycd -p ekyc-loadtest --bin ekyc-load

dir=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for k in $(env | grep -o '^EKYCD_[A-Z0-9_]*' || true); do unset "$k"; done
export EKYCD_DATA_DIR="$dir/data"
# Tenants unlimited, so the hashing is the only bound.
export EKYCD_LIMITS__DEFAULT_REQUESTS_PER_SECOND=0 EKYCD_LIMITS__DEFAULT_BURST=0
export EKYCD_LOG__FILTER=warn
citizens=3000
"$bin/ekycd" demo --citizens "$citizens" --no-serve --out "$dir/demo" >/dev/null
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# One 10 s closed-loop run (8 callers, every call a match) against a fresh
# ekycd with the extra environment given; prints answered/s.
run() {
    local label=$1 n=$2
    shift 2
    env "$@" "$bin/ekycd" serve --listen 127.0.0.1:0 >"$dir/server.out" 2>"$dir/server.err" &
    server=$!
    local addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/^ekycd listening on //p' "$dir/server.out")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$dir/server.err" >&2; echo "ekycd did not start" >&2; exit 1; }
    "$bin/ekyc-load" --endpoint "http://$addr" --api-key-file "$dir/demo/api-key" \
        --closed 8 --mix match=100 --citizens "$citizens" \
        --warmup-secs 2 --duration-secs 10 --json "$dir/$label-$n.json" >/dev/null
    kill -TERM "$server"
    wait "$server" || true
    server=""
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["total"]["answered_per_s"], 1))' "$dir/$label-$n.json"
}

echo "==> $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(git rev-parse --short HEAD), $profile build"
off=() lost=()
unreachable=(EKYCD_TELEMETRY__OTLP_ENDPOINT="http://127.0.0.1:$closed" EKYCD_TELEMETRY__EXPORT_TIMEOUT_MS=1000)
for n in $(seq "$rounds"); do
    if [ $((n % 2)) -eq 1 ]; then
        off+=("$(run off "$n")")
        lost+=("$(run unreachable "$n" "${unreachable[@]}")")
    else
        lost+=("$(run unreachable "$n" "${unreachable[@]}")")
        off+=("$(run off "$n")")
    fi
    echo "round $n: telemetry off ${off[-1]}/s, collector unreachable ${lost[-1]}/s"
done
python3 - "${off[*]}" "${lost[*]}" <<'EOF'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
lost = [float(x) for x in sys.argv[2].split()]
pairs = [l / o for o, l in zip(off, lost)]
print("pair ratios (unreachable / off): " + ", ".join(f"{r:.3f}" for r in pairs))
print(f"median pair ratio {statistics.median(pairs):.3f} over {len(pairs)} pairs; "
      f"medians off {statistics.median(off):.1f}/s, unreachable {statistics.median(lost):.1f}/s")
EOF
