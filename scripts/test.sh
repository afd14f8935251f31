#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing first (scripts/setup_env.sh), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k interactive -x`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
eval "$(bash "$repo/scripts/setup_env.sh")"
export LABEL_STUDIO_BIN="$LS_BIN"
cd "$repo"
exec "$POSE6D_PYTHON" -m pytest -ra "$@"
