"""Every console script in pyproject.toml also runs as ``python -m <its module>`` (the README's
commands work in a checkout without the scripts on PATH): ``--help`` prints its usage."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_module_of_each_console_script_runs(name):
    module, func = SCRIPTS[name].split(":")
    assert func == "main"
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage:" in run.stdout, (name, run.stdout[:500], run.stderr[-500:])
