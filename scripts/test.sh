#!/usr/bin/env bash
# Runs berth's whole test suite: scripts/setup.sh (Debian packages and the build), then
# `cargo test --workspace --locked` with any arguments given passed on, e.g.
#
#   scripts/test.sh                      # everything
#   scripts/test.sh -- --nocapture       # show the tests' output
#   scripts/test.sh restart              # only tests whose name contains "restart"
#
# Run it as root: the integration tests start berthd inside throwaway namespaces of their own
# (and touch nothing outside them); without root they skip with a message and only the unit
# tests really run (with CI=true or BERTH_REQUIRE_ROOT=1 they fail instead). Exits with cargo
# test's status.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."

# A root shell from sudo often lacks ~/.cargo/bin on its PATH; use rustup's usual place if so.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

if [ "$(id -u)" -eq 0 ]; then
    ./scripts/setup.sh
else
    echo "==> not root: skipping scripts/setup.sh (it installs packages) and building only;" \
         "integration tests that need root will skip" >&2
    cargo build --workspace --locked
fi

# --no-fail-fast: run every test binary even when an earlier one fails, so one run shows all
# failures; the exit status is still cargo test's (non-zero if any test failed).
echo "==> cargo test --workspace --locked --no-fail-fast $*"
exec cargo test --workspace --locked --no-fail-fast "$@"
