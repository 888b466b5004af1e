#!/usr/bin/env bash
# System packages the test tiers run for real, from Debian; installed once, a warm run costs milliseconds:
#   prometheus  canary analysis against a real TSDB
#   qemu-user   int8 variants checked on an emulated AVX2-only CPU (qemu-x86_64 -cpu Haswell-v4), so the
#               quantization tests hold whichever instruction sets this machine's CPU has
#   buildah, podman, skopeo, mmdebstrap   the project's images built and run without a Docker engine
#               (hack/images.sh, tests/images); uidmap: podman's user-namespace helpers
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
for tool in buildah podman skopeo mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
[[ -x /usr/lib/podman/netavark ]] || missing+=(netavark aardvark-dns)   # podman's bridge networks
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "${missing[*]} missing: run 'sudo apt-get install -y ${missing[*]}' (Debian/Ubuntu)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
prometheus --version 2>&1 | head -1
qemu-x86_64 --version | head -1
buildah --version
podman --version
