#!/usr/bin/env bash
# Creates .venv and installs mlsd-serving with every extra. Idempotent; a warm run costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip setuptools wheel
fi
stamp=.venv/.mlsd-installed
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/pip install -q -c constraints.txt -e '.[all]'
    touch "$stamp"
fi
