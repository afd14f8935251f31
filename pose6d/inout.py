"""Atomic file writes and npz / image reading helpers (bop_toolkit's inout, for our formats)."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np


MAX_IMAGE_PIXELS = 50_000_000  # 50 MP; ImageNet photos are well under 1 MP


class DataError(ValueError):
    """A dataset file that is missing, unreadable or malformed. The message names the file."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the whole new file.

    Writes a temporary file in the same folder, fsyncs it, then renames it over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_npz(path: Path, record: Mapping[str, Any]) -> None:
    """Atomically write a flat dict as an uncompressed npz (object arrays allowed)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) if not isinstance(v, np.ndarray) else v
                     for k, v in record.items()})
    atomic_write_bytes(Path(path), buf.getvalue())


def load_npz(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Read an npz into a dict; 0-d arrays become Python scalars. Raises DataError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=allow_pickle) as data:
            return {k: _unwrap(data[k]) for k in data.files}
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except Exception as exc:  # zipfile / pickle / format errors all mean a corrupt file
        raise DataError(f"cannot read npz {path}: {exc}") from None


def _unwrap(value: np.ndarray) -> Any:
    if value.ndim == 0:
        return value.item()
    return value


def read_image(path: Path) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB. Raises DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def image_size(path: Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image without decoding its pixels. An image larger than
    ``max_pixels`` (default MAX_IMAGE_PIXELS) is refused: overlays are full-size masks, so a
    forged header (a decompression bomb) would otherwise become a huge allocation."""
    from PIL import Image, UnidentifiedImageError

    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    if width * height > limit:
        raise DataError(f"image too large: {path} is {width}x{height}, over {limit} pixels")
    return width, height


def write_image(path: Path, image: np.ndarray, **save_kwargs: Any) -> None:
    """Atomically write an (H, W[, 3|4]) uint8 array; the format follows the file suffix."""
    from PIL import Image

    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(path).suffix.lower(), "PNG")
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt, **save_kwargs)
    atomic_write_bytes(Path(path), buf.getvalue())
