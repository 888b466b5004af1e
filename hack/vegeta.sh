#!/usr/bin/env bash
# Builds the pinned vegeta (open-loop HTTP load generator) from the Go module proxy, for the
# front door's burst test and the open-loop benchmarks: a fixed arrival rate whatever the server
# does, which is what exposes queueing (a closed-loop client slows down with the server).
#
#   hack/vegeta.sh build     build vegeta if missing (a warm cache makes this a no-op)
#   hack/vegeta.sh path      print the path of the binary the tests use
set -euo pipefail

VEGETA_VERSION=v12.13.0
CACHE_ROOT="${MLSD_CACHE:-${HOME}/.cache/mlsd}/vegeta/${VEGETA_VERSION}"
BIN="${CACHE_ROOT}/vegeta"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0

is_current() { [[ -x "${BIN}" ]]; }

build() {
    is_current && return 0
    [[ -x "${GO}" ]] || { echo "[vegeta] Go (1.26+) not found: install it or set GO=/path/to/go" >&2; exit 1; }
    mkdir -p "${CACHE_ROOT}"
    exec 9>"${CACHE_ROOT}/.lock"
    flock 9
    is_current && return 0
    local started=${SECONDS}
    GOBIN="${CACHE_ROOT}/.bin" "${GO}" install "github.com/tsenart/vegeta/v12@${VEGETA_VERSION}"
    mv "${CACHE_ROOT}/.bin/vegeta" "${BIN}"
    rmdir "${CACHE_ROOT}/.bin"
    echo "[vegeta] built ${VEGETA_VERSION} in $((SECONDS - started))s: ${BIN}" >&2
}

case "${1:-build}" in
    build) build ;;
    path) echo "${BIN}" ;;
    *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
