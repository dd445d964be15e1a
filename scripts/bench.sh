#!/usr/bin/env bash
# Benchmark Weir against its baselines on one broker, one set of topics and
# one machine, and write the results (BENCHMARKS.md, bench/results/*.json).
#
# Usage: scripts/bench.sh [--quick] [--out DIR] [--sections dump,caps,...]
#                         [--wait-for-load 0.5] [other options of bench/run.py]
#
# It installs what it needs: the test environment (tansu, .venv) and the
# benchmark tools (rdkafka_performance, s3s-fs and wrk, by
# scripts/bench-setup.sh). It also builds weir in release mode unless
# WEIR_BIN or --weir-bin names a binary.
# A full run takes about an hour on two cores; --quick takes two to three
# minutes once the tools are built and checks only that every section works.
# `scripts/bench.sh --help` lists the options.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

command_line="scripts/bench.sh${*:+ $*}"
weir_bin_given=false
for arg in "$@"; do
    case "$arg" in
        --weir-bin | --weir-bin=*) weir_bin_given=true ;;
        -h | --help)
            exec python3 bench/run.py --help
            ;;
    esac
done

scripts/setup-test-env.sh
scripts/bench-setup.sh

if [[ -n "${WEIR_BIN:-}" ]]; then
    weir_bin_given=true
fi
if [[ "$weir_bin_given" == false ]]; then
    echo "bench: cargo build --release --locked" >&2
    cargo build --release --locked
fi

exec .venv/bin/python bench/run.py --command "$command_line" "$@"
