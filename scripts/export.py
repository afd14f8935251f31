#!/usr/bin/env python3
"""The `pose6d-export` command (ls_admin/cli/export.py); --help explains it."""
from ls_admin.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
