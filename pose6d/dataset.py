"""The ImageNet3D annotation-tool layout and the released per-image format.

Layout under a dataset root::

    images/<category>/<name>.JPEG
    annotations/<category>/<name>_<k>.npz      one object's initial (model-predicted) pose
    annotations_new/<category>/<name>_<k>.npz  synced labels; the initial files are never touched
    ground_truth/<category>/<name>_<k>.npz     demo datasets only: the true pose
    CAD/<category>/<NN>.off

Records store angles in radians. ``name`` may contain underscores; ``k`` is the part after the
last one. Category names are whole folder names.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pose6d.cad_library import CadLibrary
from pose6d.camera import Pose
from pose6d.errors import DataError
from pose6d.inout import load_npz, save_npz

IMAGE_SUFFIXES = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
INITIAL, SYNCED, GROUND_TRUTH = "annotations", "annotations_new", "ground_truth"
IMAGES, CAD_FOLDER = "images", "CAD"
DATASET_FOLDERS = (IMAGES, CAD_FOLDER, INITIAL, SYNCED, GROUND_TRUTH)
# A key part becomes a file name (<name>_<k>.npz): well under the usual 255-byte limit.
MAX_KEY_PART, MAX_K_DIGITS = 200, 6


def _short(value: Any, limit: int = 60) -> str:
    """repr() of a value cut to ``limit`` characters (messages quote untrusted input)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@dataclasses.dataclass(frozen=True, order=True)
class ObjectKey:
    """One object: ``<category>/<name>_<k>`` (k is the object's index in its image)."""

    category: str
    name: str
    k: int

    def __post_init__(self) -> None:
        for part in (self.category, self.name):
            if not isinstance(part, str) or not _SAFE_PART.match(part) or ".." in part \
                    or len(part) > MAX_KEY_PART:
                raise DataError(f"invalid object key part {_short(part)} (letters, digits, "
                                f"'_', '.', '-'; at most {MAX_KEY_PART} characters)")
        if not isinstance(self.k, int) or not 0 <= self.k < 10 ** MAX_K_DIGITS:
            raise DataError(f"object index k must be 0 .. {10 ** MAX_K_DIGITS - 1}, "
                            f"got {_short(self.k)}")

    @classmethod
    def parse(cls, text: str) -> "ObjectKey":
        """Parse ``category/name_k``; raises DataError for anything else."""
        if not isinstance(text, str) or text.count("/") != 1:
            raise DataError(f"object key must look like 'category/name_k', got {_short(text)}")
        category, stem = text.split("/")
        name, sep, k = stem.rpartition("_")
        # ASCII digits in canonical form only: "a_03" or "a_٣" must not alias "a_3"; the length
        # is checked before int() (which refuses over 4300 digits with a plain ValueError).
        if not sep or not (k.isascii() and k.isdigit()) or len(k) > MAX_K_DIGITS \
                or k != str(int(k)):
            raise DataError(f"object key must end in _<k> (k = 0, 1, 2, ...), got {_short(text)}")
        return cls(category, name, int(k))

    @property
    def stem(self) -> str:
        return f"{self.name}_{self.k}"

    def __str__(self) -> str:
        return f"{self.category}/{self.stem}"


@dataclasses.dataclass
class ObjectRecord:
    """One object's annotation: pose (radians inside Pose), CAD choice and whatever else was stored.

    extra: other fields (bbox, width, height, annotator, object_status, dense, Label Studio ids).
    """

    pose: Pose
    cad_index: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_npz_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update(self.pose.as_radians())
        out.update(cad_index=int(self.cad_index), viewport=self.pose.viewport,
                   focal=self.pose.focal)
        return out

    @classmethod
    def from_npz_dict(cls, data: dict[str, Any], source: Path | str = "record") -> "ObjectRecord":
        try:
            pose = Pose.from_mapping(data, degrees=False)
            cad_index = int(data["cad_index"])
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"malformed object record {source}: {exc}") from None
        skip = set(pose.as_radians()) | {"cad_index", "viewport", "focal"}
        return cls(pose, cad_index, {k: v for k, v in data.items() if k not in skip})

    @property
    def bbox(self) -> np.ndarray | None:
        """(x1, y1, x2, y2) pixels, or None."""
        b = self.extra.get("bbox")
        return None if b is None else np.asarray(b, dtype=np.float64).reshape(4)


def read_record(path: Path) -> ObjectRecord:
    """Read one per-object npz. Raises DataError naming the file."""
    return ObjectRecord.from_npz_dict(load_npz(path), path)


def write_record(path: Path, record: ObjectRecord) -> None:
    """Atomically write one per-object npz."""
    save_npz(path, record.to_npz_dict())


class Dataset:
    """A dataset root in the annotation-tool layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cad = CadLibrary(self.root / CAD_FOLDER)

    @classmethod
    def open(cls, root: str | Path) -> "Dataset":
        """The dataset at ``root``; DataError when it has no ``annotations/`` folder."""
        if not (Path(root) / INITIAL).is_dir():
            raise DataError(f"{root} is not a dataset root (no {INITIAL}/ folder)")
        return cls(root)

    def record_path(self, key: ObjectKey, kind: str = INITIAL) -> Path:
        return self.root / kind / key.category / f"{key.stem}.npz"

    def objects(self, kind: str = INITIAL, categories: list[str] | None = None) -> list[ObjectKey]:
        """All object keys that have a record of ``kind``, sorted."""
        return sorted(self._iter_keys(kind, categories))

    def _iter_keys(self, kind: str, categories: list[str] | None) -> Iterator[ObjectKey]:
        base = self.root / kind
        if not base.is_dir():
            return
        for folder in base.iterdir():
            if not folder.is_dir() or (categories and folder.name not in categories):
                continue
            for path in folder.glob("*.npz"):
                try:
                    yield ObjectKey.parse(f"{folder.name}/{path.stem}")
                except DataError:
                    continue

    def image_path(self, key: ObjectKey) -> Path:
        """The object's photo; raises DataError when there is none."""
        folder = self.root / IMAGES / key.category
        for suffix in IMAGE_SUFFIXES:
            path = folder / f"{key.name}{suffix}"
            if path.is_file():
                return path
        raise DataError(f"image not found for {key}: {folder / key.name}.JPEG")

    def image_relpath(self, key: ObjectKey) -> str:
        return self.image_path(key).relative_to(self.root).as_posix()

    def read(self, key: ObjectKey, kind: str = INITIAL) -> ObjectRecord:
        return read_record(self.record_path(key, kind))

    def read_optional(self, key: ObjectKey, kind: str) -> ObjectRecord | None:
        path = self.record_path(key, kind)
        return read_record(path) if path.exists() else None

    def write(self, key: ObjectKey, record: ObjectRecord, kind: str = SYNCED) -> Path:
        """Write a record; writing over the initial annotations is refused."""
        if kind == INITIAL:
            raise DataError("refusing to overwrite initial annotations; write to annotations_new")
        path = self.record_path(key, kind)
        write_record(path, record)
        return path

    def remove(self, key: ObjectKey, kind: str = SYNCED) -> bool:
        if kind == INITIAL:
            raise DataError("refusing to delete initial annotations")
        path = self.record_path(key, kind)
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False


# --- Released ImageNet3D format: one npz per image with a list of per-object dicts. ---

RELEASED_FIELDS = ("azimuth", "elevation", "theta", "distance", "px", "py", "principal", "focal",
                   "viewport", "cad_index", "bbox", "height", "width", "class", "object_status",
                   "dense")


def write_image_annotations(path: Path, objects: list[dict[str, Any]]) -> None:
    """Atomically write the released per-image npz: ``annotations`` = list of per-object dicts."""
    arr = np.empty(len(objects), dtype=object)
    for i, obj in enumerate(objects):
        arr[i] = dict(obj)
    save_npz(path, {"annotations": arr})


def read_image_annotations(path: Path) -> list[dict[str, Any]]:
    """Read the released per-image npz; raises DataError naming the file when malformed."""
    data = load_npz(path, allow_pickle=True)
    if "annotations" not in data:
        raise DataError(f"{path} has no 'annotations' array")
    return [dict(obj) for obj in np.asarray(data["annotations"], dtype=object).reshape(-1)]
