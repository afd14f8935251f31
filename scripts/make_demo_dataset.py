#!/usr/bin/env python3
"""The `pose6d-make-demo-dataset` command (pose6d/cli/make_demo_dataset.py); --help explains it."""
from pose6d.cli.make_demo_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
