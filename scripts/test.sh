#!/usr/bin/env bash
# Run every test: set up the test environment, run the unit tests, build the
# debug binary and run the integration tests against it.
#
# Usage: scripts/test.sh [PYTEST_ARGS...]
#   Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` or
#   `scripts/test.sh -k flights`.
#
# Exits non-zero when any step fails, and also when pytest collects no test
# (its exit code 5), so that a broken selection cannot pass silently.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() {
    echo
    echo "==> $*"
}

step "setting up the test environment"
scripts/setup-test-env.sh
# rdkafka_performance, s3s-fs and wrk for tests/integration/test_bench_quick.py.
scripts/bench-setup.sh

step "cargo test (unit tests)"
cargo test --locked

step "cargo build (target/debug/weir)"
cargo build --locked

step "pytest tests/integration"
export WEIR_BIN="$REPO_ROOT/target/debug/weir"
status=0
.venv/bin/pytest tests/integration -v "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test.sh: error: pytest collected no tests (exit code 5)" >&2
    exit 1
fi
exit "$status"
