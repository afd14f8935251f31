#!/usr/bin/env python3
"""The `pose6d-qualify` command (ls_admin/cli/qualify.py); --help explains it."""
from ls_admin.cli.qualify import main

if __name__ == "__main__":
    raise SystemExit(main())
