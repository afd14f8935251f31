#!/usr/bin/env python3
"""The `pose6d-make-tasks` command (pose6d/cli/make_tasks.py); --help explains it."""
from pose6d.cli.make_tasks import main

if __name__ == "__main__":
    raise SystemExit(main())
