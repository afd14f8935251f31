"""What every command-line tool shares: one-line errors with a non-zero exit."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from pose6d.dataset import Dataset
from pose6d.errors import DataError


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def parser_from_doc(doc: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the docstring's first paragraph and whose epilog
    (shown after the options by --help) is the rest, laid out as written."""
    head, _, rest = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(description=head, epilog=rest or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def open_dataset(root: Path) -> Dataset:
    """The dataset at ``root``, or a one-line error and exit 2 when it is not a dataset root."""
    try:
        return Dataset.open(root)
    except DataError as exc:
        fail(str(exc))
