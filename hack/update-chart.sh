#!/usr/bin/env bash
# Regenerates every generated file from its one source (a test fails when they drift):
#   manifests/crds/, charts/mlsd-operator/crds/ <- `mlsd crd` (the pydantic API types)
#   charts/mlsd-operator/files/samples <- manifests/samples (Helm cannot read files outside a chart)
set -euo pipefail
cd "$(dirname "$0")/.."
MLSD="${MLSD:-.venv/bin/mlsd}"
chart=charts/mlsd-operator
mkdir -p "${chart}/crds" "${chart}/files/samples"
"${MLSD}" crd -o manifests/crds/mlsd.io_modeldeployments.yaml
"${MLSD}" crd -o "${chart}/crds/mlsd.io_modeldeployments.yaml"
rm -f "${chart}"/files/samples/*.yaml
cp manifests/samples/*.yaml "${chart}/files/samples/"
echo "updated manifests/crds, ${chart}/crds and ${chart}/files/samples" >&2
