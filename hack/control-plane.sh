#!/usr/bin/env bash
# Builds the local Kubernetes control plane used by the integration tests and `mlsd dev-cluster`:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and kwok, all from the Go
# module proxy (this machine has no container engine and cannot reach release download hosts).
#
#   hack/control-plane.sh build      build what is missing (a warm cache makes this a no-op)
#   hack/control-plane.sh path       print the bin dir the Python launcher reads
#   hack/control-plane.sh versions   print the pinned versions
#   hack/control-plane.sh clean      remove the cached binaries and wrapper modules
#
# See docs/control-plane.md for why these versions and how long a cold build takes.
set -euo pipefail

# Newest Kubernetes whose go.mod `go` line (1.26.0) the installed Go 1.26.8 accepts without a
# GOTOOLCHAIN switch. etcd: the 3.7 line Kubernetes 1.37 is released against (hack/lib/etcd.sh
# says 3.7.0), at its newest patch. kwok v0.8.0: the newest release; its go.mod wants Go 1.26.0.
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
KWOK_VERSION=v0.8.0

CACHE_ROOT="${MLSD_CACHE:-${HOME}/.cache/mlsd}/control-plane/${KUBE_VERSION}"
BIN_DIR="${CACHE_ROOT}/bin"
SRC_DIR="${CACHE_ROOT}/src"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
# The machine's Go must build these as they are: a silent toolchain download would hide a version
# drift, and CI machines may not have the downloaded toolchain.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0

log() { printf '[control-plane] %s\n' "$*" >&2; }

# A binary is current when it exists and its stamp names the version we pin now.
is_current() {  # name version
    [[ -x "${BIN_DIR}/$1" && "$(cat "${BIN_DIR}/.$1.version" 2>/dev/null)" == "$2" ]]
}

# Builds one package of a wrapper module into the cache, atomically, so an interrupted build never
# leaves a half-written binary that a later run would trust.
go_build() {  # module_dir name version package ldflags [tags]
    local dir=$1 name=$2 version=$3 pkg=$4 ldflags=$5 tags=${6:-}
    local started=${SECONDS}
    log "building ${name} ${version}"
    (cd "${dir}" && "${GO}" build -p 2 -trimpath ${tags:+-tags "${tags}"} \
        -ldflags "${ldflags}" -o "${BIN_DIR}/.${name}.tmp" "${pkg}")
    mv -f "${BIN_DIR}/.${name}.tmp" "${BIN_DIR}/${name}"
    echo "${version}" >"${BIN_DIR}/.${name}.version"
    log "built ${name} in $((SECONDS - started))s"
}

# A wrapper module for k8s.io/kubernetes: its go.mod requires every staging module (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and points them at ./staging, which a module download does not
# have. We replace each with the published v0.X.Y; the list comes from the release's own go.mod so
# a new staging module in a later release is picked up without editing this script.
kubernetes_module() {
    local dir="${SRC_DIR}/kubernetes"
    [[ -f "${dir}/.ready-${KUBE_VERSION}" ]] && { echo "${dir}"; return; }
    rm -rf "${dir}" && mkdir -p "${dir}"
    local gomod staging_version=v0.${KUBE_VERSION#v1.}
    gomod=$("${GO}" mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f "${gomod}" ]] || { log "no go.mod for k8s.io/kubernetes@${KUBE_VERSION}"; exit 1; }
    {
        echo "module mlsd.local/control-plane/kubernetes"
        echo
        echo "go 1.26.0"
        echo
        echo "require k8s.io/kubernetes ${KUBE_VERSION}"
        echo
        echo "replace ("
        awk -v v="${staging_version}" \
            '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { printf "\t%s => %s %s\n", $1, $1, v }' \
            "${gomod}"
        echo ")"
    } >"${dir}/go.mod"
    log "k8s.io/kubernetes ${KUBE_VERSION}: $(grep -c ' => ' "${dir}/go.mod") staging modules replaced with ${staging_version}"
    (cd "${dir}" && "${GO}" get -tool \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl) >&2
    touch "${dir}/.ready-${KUBE_VERSION}"
    echo "${dir}"
}

# A wrapper module for a main package that cannot be `go install`ed (etcd's go.mod has replaces)
# or whose version we want to stamp (kwok).
simple_module() {  # name module version package
    local dir="${SRC_DIR}/$1"
    [[ -f "${dir}/.ready-$3" ]] && { echo "${dir}"; return; }
    rm -rf "${dir}" && mkdir -p "${dir}"
    printf 'module mlsd.local/control-plane/%s\n\ngo 1.26.0\n' "$1" >"${dir}/go.mod"
    (cd "${dir}" && "${GO}" get "$2@$3" && "${GO}" get -tool "$4") >&2
    touch "${dir}/.ready-$3"
    echo "${dir}"
}

# The kwok controller has no built-in stages: kwokctl writes its defaults into kwok's config. We
# take the same files from the same release (node-initialize, heartbeat with leases, pod
# ready/complete/delete) so fake nodes turn Ready and pods reach Running and Ready.
kwok_stages() {  # module_dir
    local src stage
    src=$(cd "$1" && "${GO}" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
    {
        for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
            pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
            echo "---"
            cat "${src}/${stage}.yaml"
        done
    } >"${BIN_DIR}/.kwok-stages.tmp"
    mv -f "${BIN_DIR}/.kwok-stages.tmp" "${BIN_DIR}/kwok-stages.yaml"
}

# The same -X flags as upstream's hack/lib/version.sh: unstamped binaries say v0.0.0, and clients
# (kubectl's skew warning, kwokctl's flag selection) read that version.
kube_ldflags() {
    local minor=${KUBE_VERSION#v1.}
    minor=${minor%%.*}
    local flags="-s -w" pkg key val
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        for kv in "gitVersion=${KUBE_VERSION}" "gitMajor=1" "gitMinor=${minor}" \
            "gitTreeState=clean" "gitCommit=module-proxy-${KUBE_VERSION}" \
            "buildDate=1970-01-01T00:00:00Z"; do
            key=${kv%%=*} val=${kv#*=}
            flags+=" -X ${pkg}.${key}=${val}"
        done
    done
    echo "${flags}"
}

build() {
    [[ -x "${GO}" ]] || { log "Go (1.26+) not found: install it or set GO=/path/to/go"; exit 1; }
    mkdir -p "${BIN_DIR}"
    # Two builds at once (a test run and a dev cluster) would share the wrapper modules.
    exec 9>"${CACHE_ROOT}/.lock"
    flock 9
    local started=${SECONDS} name dir
    # One at a time: each link of a Kubernetes binary takes about 2 GiB.
    for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        is_current "${name}" "${KUBE_VERSION}" && continue
        dir=$(kubernetes_module)
        go_build "${dir}" "${name}" "${KUBE_VERSION}" "k8s.io/kubernetes/cmd/${name}" \
            "$(kube_ldflags)" "selinux,notest,grpcnotrace"
    done
    if ! is_current etcd "${ETCD_VERSION}"; then
        dir=$(simple_module etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" go.etcd.io/etcd/server/v3)
        go_build "${dir}" etcd "${ETCD_VERSION}" go.etcd.io/etcd/server/v3 \
            "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-proxy-${ETCD_VERSION}"
    fi
    if ! is_current kwok "${KWOK_VERSION}" || [[ ! -f "${BIN_DIR}/kwok-stages.yaml" ]]; then
        dir=$(simple_module kwok sigs.k8s.io/kwok "${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok)
        go_build "${dir}" kwok "${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok \
            "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION}"
        kwok_stages "${dir}"
    fi
    log "binaries in ${BIN_DIR} ($((SECONDS - started))s)"
}

case "${1:-build}" in
    build) build ;;
    path) echo "${BIN_DIR}" ;;
    versions) printf 'kubernetes %s\netcd %s\nkwok %s\n' "${KUBE_VERSION}" "${ETCD_VERSION}" "${KWOK_VERSION}" ;;
    clean) rm -rf "${CACHE_ROOT}" ;;
    *) echo "usage: $0 build|path|versions|clean" >&2; exit 2 ;;
esac
