"""Pictures of a category's CAD models for the CAD choice, written under the dataset root.

``cad_thumbnails/<category>/<NN>.png`` (NN as the mesh's own file name) beside ``CAD/``: Label
Studio serves them itself through its local-files URLs like the photos, so the browser needs
nothing else (no backend URL, nothing published from a container). A picture is rewritten when
its mesh is newer.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from pose6d.cad_library import CadLibrary
from pose6d.dataset import Dataset
from pose6d.inout import write_image
from pose6d.overlay import render_thumbnail

THUMBNAILS = "cad_thumbnails"
THUMBNAIL_PX = 120


def thumbnail_relpath(library: CadLibrary, category: str, index: int) -> str:
    """The picture's path relative to the dataset root (posix)."""
    return f"{THUMBNAILS}/{category}/{library.path(category, index).stem}.png"


def write_thumbnails(dataset: Dataset, categories: Iterable[str] | None = None,
                     size: int = THUMBNAIL_PX, progress: bool = True) -> int:
    """Render the missing or outdated pictures of ``categories`` (default: all); returns how many
    were written. CadError for a mesh that cannot be read."""
    from tqdm import tqdm

    library = dataset.cad
    jobs = []
    for category in sorted(set(categories) if categories is not None else library.categories()):
        for index in library.indices(category):
            mesh_path = library.path(category, index)
            out = dataset.root / thumbnail_relpath(library, category, index)
            if not out.exists() or out.stat().st_mtime < mesh_path.stat().st_mtime:
                jobs.append((category, index, out))
    for category, index, out in tqdm(jobs, desc="CAD pictures", unit="model", file=sys.stderr,
                                     disable=not progress or not jobs):
        write_image(Path(out), render_thumbnail(library.mesh(category, index), size=size))
    return len(jobs)
