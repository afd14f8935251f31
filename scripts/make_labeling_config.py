#!/usr/bin/env python3
"""The `pose6d-make-labeling-config` command (pose6d/cli/make_labeling_config.py); --help explains
it. Run from here it (re)writes this repository's labeling_config/pose6d.xml by default."""
from pathlib import Path

from pose6d.cli.make_labeling_config import main

if __name__ == "__main__":
    raise SystemExit(main(default_out=Path(__file__).resolve().parents[1] / "labeling_config"
                          / "pose6d.xml"))
