#!/usr/bin/env bash
# Builds the pinned Helm v3 CLI from the Go module proxy, for the chart tests and docs/install.md.
# This machine has no container engine and cannot reach get.helm.sh, so Helm is compiled the way
# its Makefile does it (same -X version flags), not downloaded as a release tarball.
#
#   hack/helm.sh build      build helm if missing (a warm cache makes this a no-op)
#   hack/helm.sh path       print the path of the helm binary the tests use
#   hack/helm.sh version    print the pinned version
#   hack/helm.sh clean      remove the cached binary
#
# Why a source build and not a PyPI wheel that embeds Helm's Go SDK: the tests then run the same
# `helm lint/template/install/uninstall` commands a user types, at a version we pin here, and the
# Go toolchain is already a prerequisite (hack/control-plane.sh).
set -euo pipefail

# The newest Helm 3 release; its go.mod wants Go 1.26.0, which the installed Go 1.26.8 accepts
# without a toolchain switch. Its Kubernetes libraries are v0.37.0.
HELM_VERSION=v3.22.0

CACHE_ROOT="${MLSD_CACHE:-${HOME}/.cache/mlsd}/helm/${HELM_VERSION}"
BIN="${CACHE_ROOT}/helm"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0

log() { printf '[helm] %s\n' "$*" >&2; }

is_current() { [[ -x "${BIN}" && "$(cat "${CACHE_ROOT}/.version" 2>/dev/null)" == "${HELM_VERSION}" ]]; }

build() {
    is_current && return 0
    [[ -x "${GO}" ]] || { log "Go (1.26+) not found: install it or set GO=/path/to/go"; exit 1; }
    mkdir -p "${CACHE_ROOT}"
    exec 9>"${CACHE_ROOT}/.lock"
    flock 9
    is_current && return 0 # built by whoever held the lock before us
    local started=${SECONDS} gomod kube major minor
    gomod=$("${GO}" mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    # Helm's Makefile derives the default Kubernetes version (what `helm template` reports as
    # .Capabilities.KubeVersion and what lint's deprecation check uses) from client-go's version.
    kube=$(awk '$1 == "k8s.io/client-go" { print $2 }' "${gomod}")
    kube=${kube#v}
    major=$((${kube%%.*} + 1))
    minor=${kube#*.}
    minor=${minor%%.*}
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=module-proxy-${HELM_VERSION}"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
    log "building helm ${HELM_VERSION} (Kubernetes libraries v${kube}; a cold build takes minutes)"
    # Into a temporary GOBIN, then renamed: an interrupted build never leaves a binary we trust.
    BUILD_TMP=$(mktemp -d "${CACHE_ROOT}/.build.XXXXXX")
    trap 'rm -rf "${BUILD_TMP}"' EXIT
    GOBIN="${BUILD_TMP}" "${GO}" install -p 2 -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    mv -f "${BUILD_TMP}/helm" "${BIN}"
    echo "${HELM_VERSION}" >"${CACHE_ROOT}/.version"
    log "built ${BIN} in $((SECONDS - started))s"
}

case "${1:-build}" in
    build) build ;;
    path) echo "${BIN}" ;;
    version) echo "${HELM_VERSION}" ;;
    clean) rm -rf "${CACHE_ROOT}" ;;
    *) echo "usage: $0 build|path|version|clean" >&2; exit 2 ;;
esac
