#!/usr/bin/env python3
"""The `pose6d-review` command (ls_admin/cli/review.py); --help explains it."""
from ls_admin.cli.review import main

if __name__ == "__main__":
    raise SystemExit(main())
