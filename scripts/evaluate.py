#!/usr/bin/env python3
"""The `pose6d-evaluate` command (ls_admin/cli/evaluate.py); --help explains it."""
from ls_admin.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
