#!/usr/bin/env bash
# Install what the integration tests need: the tansu Kafka broker and the
# Python virtual environment .venv with requirements-test.txt.
#
# Idempotent. The broker build is kept under $WEIR_CACHE (default
# ~/.cache/weir) and pip uses its usual cache, but a missing or broken cache
# only means a rebuild: every step installs from the registries when needed.
#
# Usage: scripts/setup-test-env.sh [tansu|venv]...   (no argument: both)
# Other scripts may source this file and call ensure_tansu / ensure_venv.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
TANSU_VERSION="0.6.0"
TANSU_ROOT="$WEIR_CACHE/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
VENV_DIR="$REPO_ROOT/.venv"
REQUIREMENTS="$REPO_ROOT/requirements-test.txt"

log() {
    echo "setup-test-env: $*" >&2
}

tansu_runs() {
    [[ -x "$TANSU_BIN" ]] && "$TANSU_BIN" --version >/dev/null 2>&1
}

# Build tansu with cargo unless a working binary is already in the cache.
# A lock file serializes concurrent runs (the test command and the quickstart
# started together), so only one of them builds. The build takes about ten to
# fifteen minutes on two cores.
ensure_tansu() {
    if tansu_runs; then
        log "tansu $TANSU_VERSION found at $TANSU_BIN"
        return 0
    fi
    mkdir -p "$WEIR_CACHE"
    (
        flock 9
        if tansu_runs; then
            exit 0
        fi
        log "building tansu $TANSU_VERSION into $TANSU_ROOT (about 10-15 min)"
        cargo install "tansu@$TANSU_VERSION" --locked \
            --features dynostore,libsql --root "$TANSU_ROOT"
    ) 9>"$WEIR_CACHE/tansu-$TANSU_VERSION.lock"
    if ! tansu_runs; then
        log "error: $TANSU_BIN is missing or does not run after the build"
        return 1
    fi
    log "tansu $TANSU_VERSION installed at $TANSU_BIN"
}

# Create .venv and install requirements-test.txt into it. The hash of the
# requirements file is stored in the venv, so an unchanged file skips pip.
ensure_venv() {
    local stamp="$VENV_DIR/.requirements.sha256"
    local wanted
    wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [[ -x "$VENV_DIR/bin/python" ]] \
        && "$VENV_DIR/bin/python" -c 'import sys' 2>/dev/null \
        && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$wanted" ]]; then
        log "venv up to date at $VENV_DIR"
        return 0
    fi
    if ! "$VENV_DIR/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating venv at $VENV_DIR"
        rm -rf "$VENV_DIR"
        python3 -m venv "$VENV_DIR"
    fi
    log "installing $REQUIREMENTS into $VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
    "$VENV_DIR/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
    echo "$wanted" >"$stamp"
}

main() {
    local steps=("$@")
    if [[ ${#steps[@]} -eq 0 ]]; then
        steps=(tansu venv)
    fi
    for step in "${steps[@]}"; do
        case "$step" in
            tansu) ensure_tansu ;;
            venv) ensure_venv ;;
            *)
                log "error: unknown step '$step' (expected tansu or venv)"
                return 2
                ;;
        esac
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
