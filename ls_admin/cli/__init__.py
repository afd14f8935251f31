"""The admin command-line tools (console commands pose6d-*, scripts/*.py)."""
