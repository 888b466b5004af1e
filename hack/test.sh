#!/usr/bin/env bash
# The whole test suite: sets up .venv, builds (or reuses) the local control plane, runs every tier.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
hack/install-test-deps.sh
if [[ -x hack/control-plane.sh ]]; then
    hack/control-plane.sh build
fi
hack/helm.sh build
hack/vegeta.sh build
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: failing, a suite that runs nothing proves nothing" >&2
    exit 1
fi
exit $rc
