"""Settings every layer shares: the environment's names and where installed things live."""
from __future__ import annotations

import os
from pathlib import Path

# Every setting of the backend is a POSE6D_<NAME> variable (ml_backend/settings.py); the admin
# tools read the ones they share with it (the sync store) under the same names.
ENV_PREFIX = "POSE6D_"
HOME_ENV = ENV_PREFIX + "HOME"


def tool_home() -> Path:
    """Where scripts/setup_env.sh installs the environments: $POSE6D_HOME, else ~/.cache/pose6d."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "pose6d")
