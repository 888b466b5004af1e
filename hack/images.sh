#!/usr/bin/env bash
# The project's images, built from its own Dockerfiles without a Docker engine (buildah, podman and
# skopeo from Debian; the python base made from Debian's packages by mmdebstrap). See docs/images.md.
#
#   hack/images.sh build [NAME ...]    build (or find unchanged) operator, predictor, tritonserver, trainer
#   hack/images.sh list                reference, digest, uncompressed size of each
#   hack/images.sh push REGISTRY       copy them to REGISTRY/<name>:<tag> (podman push)
#
# Images and caches live under ${MLSD_CACHE:-~/.cache/mlsd}/images (a containers store of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
hack/install-test-deps.sh >/dev/null
exec .venv/bin/mlsd dev-cluster images "$@"
