#!/usr/bin/env python3
"""The `pose6d-setup-project` command (ls_admin/cli/setup_project.py); --help explains it."""
from ls_admin.cli.setup_project import main

if __name__ == "__main__":
    raise SystemExit(main())
