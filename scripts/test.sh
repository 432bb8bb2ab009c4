#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# (Python packages for the cross-language checks, cargo-nextest), makes sure
# the local Redis and PostgreSQL are up, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is missing: install the Rust toolchain (rustup)"
command -v python3 >/dev/null || die "python3 is missing: apt-get install -y python3 python3-pip"

# Python: independent implementations used by service/tests/cross_language.rs.
if ! python3 -c 'import cryptography, argon2.low_level' 2>/dev/null; then
    say "installing Python test packages (scripts/requirements.txt)"
    python3 -m pip install --quiet -r scripts/requirements.txt \
        || die "cannot install scripts/requirements.txt with pip"
fi
python3 -c 'import cryptography, argon2.low_level' \
    || die "python packages from scripts/requirements.txt are not importable"

if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest || die "cannot install cargo-nextest"
fi

bash scripts/services.sh

say "running the tests"
exec cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"
