#!/usr/bin/env bash
# The one benchmark command: builds the release ekycd and the bench binary,
# then measures the service against raw Argon2 and a bare tonic server on
# the same cores (flags are passed on, e.g. --out target/bench.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p ekyc-service --bin ekycd -p ekyc-client --bin ekyc -p ekyc-loadtest --bin bench
exec target/release/bench "$@"
