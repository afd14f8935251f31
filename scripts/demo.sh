#!/usr/bin/env bash
# The demo: installs what is missing (scripts/setup_env.sh), then runs scripts/demo.py, which makes
# a demo dataset in ./demo_data, starts Label Studio (http://127.0.0.1:8080) and the backend (9090),
# sets up a project and waits; Ctrl-C stops both. Arguments go to demo.py (--help lists them).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
eval "$(bash "$repo/scripts/setup_env.sh")"
export LABEL_STUDIO_BIN="$LS_BIN"
exec "$POSE6D_PYTHON" "$repo/scripts/demo.py" "$@"
