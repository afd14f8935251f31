#!/usr/bin/env python3
"""The `pose6d-reconcile` command (ls_admin/cli/reconcile.py); --help explains it."""
from ls_admin.cli.reconcile import main

if __name__ == "__main__":
    raise SystemExit(main())
