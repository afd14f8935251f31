#!/usr/bin/env python3
"""The `pose6d-demo` command (ls_admin/cli/demo.py); --help explains it."""
from ls_admin.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
