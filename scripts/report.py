#!/usr/bin/env python3
"""The `pose6d-report` command (ls_admin/cli/report.py); --help explains it."""
from ls_admin.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main())
