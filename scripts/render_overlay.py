#!/usr/bin/env python3
"""The `pose6d-render-overlay` command (pose6d/cli/render_overlay.py); --help explains it."""
from pose6d.cli.render_overlay import main

if __name__ == "__main__":
    raise SystemExit(main())
