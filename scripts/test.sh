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

# Python: independent implementations used by service/tests/cross_language.rs
# (which runs $EKYC_TEST_PYTHON, default python3). When the system Python
# lacks the packages, they go into a virtualenv under target/, so an
# "externally managed" system Python is never touched.
PY=python3
if ! "$PY" -c 'import cryptography, argon2.low_level' 2>/dev/null; then
    venv="$PWD/target/test-venv"
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv for the Python test packages"
        python3 -m venv "$venv" 2>/dev/null || {
            command -v apt-get >/dev/null && apt-get install -y -qq python3-venv >/dev/null 2>&1
            python3 -m venv "$venv"
        } || die "cannot create a Python virtualenv (apt-get install python3-venv)"
    fi
    PY="$venv/bin/python"
    if ! "$PY" -c 'import cryptography, argon2.low_level' 2>/dev/null; then
        say "installing scripts/requirements.txt into $venv"
        "$PY" -m pip install --quiet -r scripts/requirements.txt \
            || die "cannot install scripts/requirements.txt with pip"
    fi
fi
"$PY" -c 'import cryptography, argon2.low_level' \
    || die "python packages from scripts/requirements.txt are not importable"
export EKYC_TEST_PYTHON="$PY"

if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest || die "cannot install cargo-nextest"
fi

bash scripts/services.sh

say "running the tests"
cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"
# The service's tests again with every store in PostgreSQL (each test in a
# database of its own on the local server): both backends must behave alike.
say "running the service tests again on PostgreSQL"
# (--workspace with a filter, not -p: the same feature set as the first
# run, so nothing is rebuilt.)
EKYC_TEST_DATABASE=postgres cargo nextest run --workspace \
    -E 'package(ekyc-service) | package(ekyc-client)' \
    --profile "${NEXTEST_PROFILE:-default}" "$@"
