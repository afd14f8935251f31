"""The derived labels' common step: the labels of each photo rendered together (masks, visible
parts, per-pixel model points) for the COCO, correspondence and BOP-mask exports.

Objects of one photo are the labels sharing (category, image name). What a label may hide:
every other object of its photo with a usable label (not skipped, not "bad quality - no
object": nothing is there to hide anything). With --all-annotations an object's own other
annotations never hide it.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from ls_admin.export_source import ExportError, Label
from pose6d.cad_library import CadError
from pose6d.dataset import Dataset
from pose6d.errors import DataError
from pose6d.inout import image_size
from pose6d.visibility import ObjectView, object_surface, photo_views

T = TypeVar("T")


@dataclasses.dataclass
class Photo:
    """One photo's labels and their views (same order), width x height pixels."""

    category: str
    name: str
    width: int
    height: int
    labels: list[Label]
    views: list[ObjectView] = dataclasses.field(default_factory=list)


def group_photos(labels: Sequence[Label]) -> list[tuple[tuple[str, str], list[Label]]]:
    """[((category, name), labels of that photo)] in (category, name) order, labels in input
    order."""
    groups: dict[tuple[str, str], list[Label]] = defaultdict(list)
    for lab in labels:
        groups[(lab.key.category, lab.key.name)].append(lab)
    return sorted(groups.items())


def photo_size(labels: Sequence[Label], dataset: Dataset) -> tuple[int, int]:
    """(width, height) of a photo: from its records, else from the image file's header."""
    for lab in labels:
        w, h = lab.record.extra.get("width"), lab.record.extra.get("height")
        try:
            if w is not None and h is not None and int(w) > 0 and int(h) > 0:
                return int(w), int(h)
        except (TypeError, ValueError):
            pass
    key = labels[0].key
    try:
        return image_size(dataset.image_path(key))
    except DataError as exc:
        raise ExportError(f"{key}: no width / height in its record and {exc}") from None


def render_photo(category: str, name: str, labels: list[Label], dataset: Dataset,
                 whole: bool = False, points: bool = False, nthreads: int = 1) -> Photo:
    """The photo's views: each label ray-cast, then the z-buffer over the photo (docstring).
    whole, points: as pose6d.visibility.object_surface (BOP's counts; correspondences)."""
    width, height = photo_size(labels, dataset)
    surfaces = []
    for lab in labels:
        try:
            mesh = dataset.cad.mesh(category, int(lab.record.cad_index))
        except CadError as exc:
            raise ExportError(f"{lab.key}: {exc}") from None
        surfaces.append(object_surface(mesh, lab.record.pose, width, height, nthreads, whole,
                                       points))
    views = photo_views(surfaces, width, height, owners=[lab.key for lab in labels],
                        occludes=[lab.usable for lab in labels])
    return Photo(category, name, width, height, labels, views)


def render_photos(labels: Sequence[Label], dataset: Dataset, work: Callable[[Photo], T],
                  workers: int = 2, progress: bool = True, desc: str = "render",
                  whole: bool = False, points: bool = False) -> Iterator[T]:
    """``work(photo)`` for every photo of ``labels`` (group_photos order), run on ``workers``
    threads with the render itself (whole, points: render_photo), so that encoding and
    compressing overlap the casts; yields the results in order. A tqdm bar counts objects."""
    from tqdm import tqdm

    def job(group: tuple[tuple[str, str], list[Label]]) -> tuple[int, T]:
        photo = render_photo(*group[0], group[1], dataset, whole, points)
        return len(photo.labels), work(photo)

    groups = group_photos(labels)
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(labels), desc=desc, unit="obj", disable=not progress) as bar:
        # map keeps order; Embree, zlib and PNG encoding release the GIL: threads overlap
        for n, result in pool.map(job, groups):
            bar.update(n)
            yield result


def relative_image(dataset: Dataset, label: Label) -> str:
    """The photo's path relative to the data root (images/<category>/<name>.<ext>), or the
    default .JPEG name when the file is missing."""
    try:
        return dataset.image_relpath(label.key)
    except DataError:
        return Path("images", label.key.category, f"{label.key.name}.JPEG").as_posix()
