#!/usr/bin/env bash
# Install what the benchmarks need beyond the test environment:
#
# - rdkafka_performance, librdkafka's own benchmark client, built from the
#   librdkafka source that the rdkafka-sys crate vendors (the same version
#   the weir binary links), into $WEIR_CACHE/rdkafka-performance-VERSION/;
# - s3s-fs, an S3-protocol server on the local file system (crates.io),
#   into $WEIR_CACHE/s3s-fs-VERSION/;
# - wrk, the HTTP load generator (Debian package), unless it is on PATH.
#
# Idempotent: each step is skipped when its binary runs. Builds take a lock
# in $WEIR_CACHE so that two runs started together build once.
#
# Usage: scripts/bench-setup.sh [rdkafka|s3s|wrk]...   (no argument: all)
# Other scripts may source this file and call the ensure_* functions.

set -euo pipefail

BENCH_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
RDKAFKA_SYS_VERSION="4.10.0+2.12.1"
LIBRDKAFKA_VERSION="2.12.1"
RDKAFKA_PERF_ROOT="$WEIR_CACHE/rdkafka-performance-$LIBRDKAFKA_VERSION"
RDKAFKA_PERF_BIN="$RDKAFKA_PERF_ROOT/bin/rdkafka_performance"
S3S_VERSION="0.14.1"
S3S_ROOT="$WEIR_CACHE/s3s-fs-$S3S_VERSION"
S3S_BIN="$S3S_ROOT/bin/s3s-fs"

bench_log() {
    echo "bench-setup: $*" >&2
}

# Print the directory of the vendored librdkafka source, fetching the crate
# into cargo's registry first when it is not there.
librdkafka_source() {
    local found
    found="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS_VERSION"/librdkafka 2>/dev/null | head -n1 || true)"
    if [[ -z "$found" ]]; then
        # The weir build downloads rdkafka-sys; fetching alone is enough here.
        (cd "$BENCH_REPO_ROOT" && cargo fetch --locked >&2)
        found="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS_VERSION"/librdkafka 2>/dev/null | head -n1 || true)"
    fi
    if [[ -z "$found" ]]; then
        bench_log "error: librdkafka source of rdkafka-sys $RDKAFKA_SYS_VERSION not found under ~/.cargo/registry/src; run cargo fetch in the repository"
        return 1
    fi
    echo "$found"
}

rdkafka_performance_runs() {
    [[ -x "$RDKAFKA_PERF_BIN" ]] || return 1
    # The usage text names the version; it exits with 1 after printing it.
    local usage
    usage="$("$RDKAFKA_PERF_BIN" -h 2>&1 || true)"
    [[ "$usage" == *"librdkafka version $LIBRDKAFKA_VERSION "* ]]
}

# Build rdkafka_performance with the options rdkafka-sys uses by default
# (static, zlib, built-in LZ4, no SSL, no SASL GSSAPI, no curl, no zstd).
# The source is copied first, because the registry copy must stay pristine.
# About three minutes on two cores.
ensure_rdkafka_performance() {
    if rdkafka_performance_runs; then
        bench_log "rdkafka_performance $LIBRDKAFKA_VERSION found at $RDKAFKA_PERF_BIN"
        return 0
    fi
    local source
    source="$(librdkafka_source)"
    mkdir -p "$WEIR_CACHE"
    (
        flock 9
        if rdkafka_performance_runs; then
            exit 0
        fi
        bench_log "building rdkafka_performance $LIBRDKAFKA_VERSION into $RDKAFKA_PERF_ROOT (about 3 min)"
        rm -rf "$RDKAFKA_PERF_ROOT"
        mkdir -p "$RDKAFKA_PERF_ROOT/bin"
        cp -a "$source" "$RDKAFKA_PERF_ROOT/src"
        cd "$RDKAFKA_PERF_ROOT/src"
        ./configure --disable-ssl --disable-gssapi --disable-curl --disable-zstd \
            --enable-zlib --disable-lz4-ext >"$RDKAFKA_PERF_ROOT/build.log" 2>&1
        make -j"$(nproc)" libs >>"$RDKAFKA_PERF_ROOT/build.log" 2>&1
        make -C examples rdkafka_performance >>"$RDKAFKA_PERF_ROOT/build.log" 2>&1
        cp examples/rdkafka_performance "$RDKAFKA_PERF_BIN"
    ) 9>"$WEIR_CACHE/rdkafka-performance.lock" || {
        bench_log "error: building rdkafka_performance failed; see $RDKAFKA_PERF_ROOT/build.log"
        return 1
    }
    if ! rdkafka_performance_runs; then
        bench_log "error: $RDKAFKA_PERF_BIN is missing or is not librdkafka $LIBRDKAFKA_VERSION; see $RDKAFKA_PERF_ROOT/build.log"
        return 1
    fi
    bench_log "rdkafka_performance installed at $RDKAFKA_PERF_BIN"
}

s3s_runs() {
    [[ -x "$S3S_BIN" ]] && "$S3S_BIN" --help >/dev/null 2>&1
}

# Install the s3s-fs server with cargo. About four minutes on two cores.
ensure_s3s() {
    if s3s_runs; then
        bench_log "s3s-fs $S3S_VERSION found at $S3S_BIN"
        return 0
    fi
    mkdir -p "$WEIR_CACHE"
    (
        flock 9
        if s3s_runs; then
            exit 0
        fi
        bench_log "building s3s-fs $S3S_VERSION into $S3S_ROOT (about 4 min)"
        cargo install "s3s-fs@$S3S_VERSION" --locked --features binary --root "$S3S_ROOT" \
            >"$WEIR_CACHE/s3s-fs-build.log" 2>&1
    ) 9>"$WEIR_CACHE/s3s-fs.lock" || {
        bench_log "error: cargo install s3s-fs failed; see $WEIR_CACHE/s3s-fs-build.log"
        return 1
    }
    if ! s3s_runs; then
        bench_log "error: $S3S_BIN is missing or does not run; see $WEIR_CACHE/s3s-fs-build.log"
        return 1
    fi
    bench_log "s3s-fs installed at $S3S_BIN"
}

# Install Debian's wrk unless a wrk is on PATH.
ensure_wrk() {
    if command -v wrk >/dev/null 2>&1; then
        bench_log "wrk found at $(command -v wrk)"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        bench_log "error: wrk is not installed; install the Debian package wrk (apt-get install wrk)"
        return 1
    fi
    bench_log "installing the Debian package wrk"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends wrk >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends wrk >/dev/null
    }
}

bench_setup_main() {
    local steps=("$@")
    if [[ ${#steps[@]} -eq 0 ]]; then
        steps=(rdkafka s3s wrk)
    fi
    for step in "${steps[@]}"; do
        case "$step" in
            rdkafka) ensure_rdkafka_performance ;;
            s3s) ensure_s3s ;;
            wrk) ensure_wrk ;;
            *)
                bench_log "error: unknown step '$step' (expected rdkafka, s3s or wrk)"
                return 2
                ;;
        esac
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    bench_setup_main "$@"
fi
