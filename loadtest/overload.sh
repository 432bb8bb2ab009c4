#!/usr/bin/env bash
# Overload benchmark: builds the release ekycd and the load generator, then
# runs it (flags are passed on, e.g. --json overload.json, --pool-threads 4).
# Memory and shedding figures only mean something for an optimised server,
# hence --release for both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p ekyc-service --bin ekycd -p ekyc-loadtest --bin overload
exec target/release/overload "$@"
