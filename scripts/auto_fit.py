#!/usr/bin/env python3
"""The `pose6d-auto-fit` command (pose6d/cli/auto_fit.py); --help explains it."""
from pose6d.cli.auto_fit import main

if __name__ == "__main__":
    raise SystemExit(main())
