#!/usr/bin/env bash
# System packages the test tiers run for real: Prometheus (canary analysis against a real TSDB).
# Debian's package; installed once, a warm run costs milliseconds.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "prometheus is missing: run 'sudo apt-get install -y prometheus' (Debian/Ubuntu)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
prometheus --version 2>&1 | head -1
