"""Atomic file writes and npz / image reading helpers (bop_toolkit's inout, for our formats)."""
from __future__ import annotations

import ast
import io
import os
import re
import secrets
import time
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pose6d.errors import DataError


MAX_IMAGE_PIXELS = 50_000_000  # 50 MP; ImageNet photos are well under 1 MP

# EXIF orientations that browsers apply on screen (CSS image-orientation: from-image, also to a
# canvas) but PIL, numpy and the PASCAL3D+ tools do not: the photo the annotator sees is not
# the one its poses are in. Chromium keeps naturalWidth turned even under image-orientation:
# none (tests/test_photo_orientation.py), so no page rule can undo it.
TURNED_ON_SCREEN = {2: "mirrored", 3: "turned by 180 deg", 4: "mirrored upside down",
                    5: "mirrored and turned", 6: "turned by 90 deg clockwise",
                    7: "mirrored and turned", 8: "turned by 90 deg anticlockwise"}
EXIF_ORIENTATION = 0x0112
# Files (PIL's format names) that browsers show at the size PIL reads; Chromium shows none of
# PIL's others (TIFF, PPM, TGA, JPEG 2000, ...: tests/test_photo_pixels.py). MPO: a phone's
# JPEG with a second picture.
SHOWN_BY_BROWSERS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "AVIF", "ICO"})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the whole new file.

    Writes a temporary file in the same folder, fsyncs it, then renames it over ``path``. The
    file's permissions follow the umask (and a default ACL) like any tool's ``open(path, "w")``:
    0644 under the usual umask 022, so that other users (a container's, Label Studio's) can read
    datasets, synced records and exports.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
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


# The temporary files atomic_write_bytes makes: ".<name>.<8 hex digits>.tmp" beside <name>.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def remove_stale_temp_files(folder: Path, older_than_s: float) -> list[Path]:
    """Delete the temporary files of atomic writes under ``folder`` (recursively) not modified
    for ``older_than_s`` seconds: left by a writer killed between writing and renaming. A
    younger one may belong to a writer in another process that is still at work. Returns the
    deleted paths (a file that vanished meanwhile is skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for path in folder.rglob(".*.tmp"):
        if not TEMP_NAME.match(path.name):
            continue
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, empty temporary file beside ``path``: (fd, name). Like tempfile.mkstemp (O_EXCL, a
    random name) but created with mode 0666, which the kernel reduces by the umask: mkstemp's
    0600 would make every file the project writes owner-only. Asking for the mode at creation
    reads no umask (os.umask is process-wide and changing it is not thread-safe)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # O_EXCL: never a file (or link) already there
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def save_npz(path: Path, record: Mapping[str, Any]) -> None:
    """Atomically write a flat dict as an uncompressed npz (object arrays allowed)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) if not isinstance(v, np.ndarray) else v
                     for k, v in record.items()})
    atomic_write_bytes(Path(path), buf.getvalue())


def load_npz(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Read an npz into a dict; 0-d arrays become Python scalars. Raises DataError naming the file.

    Plain npz files (stored members, no object arrays: every per-object record) take a fast path
    about 8x quicker than np.load, which exports of 10k+ records feel; anything else goes
    through np.load.
    """
    path = Path(path)
    try:
        return _load_plain_npz(path)
    except (OSError, ValueError, KeyError, SyntaxError, TypeError, struct.error, zipfile.BadZipFile):
        pass
    try:
        with np.load(path, allow_pickle=allow_pickle) as data:
            return {k: _unwrap(data[k]) for k in data.files}
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except Exception as exc:  # zipfile / pickle / format errors all mean a corrupt file
        raise DataError(f"cannot read npz {path}: {exc}") from None


_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple, bool]] = {}  # a few distinct headers recur


def _load_plain_npz(path: Path) -> dict[str, Any]:
    """Members of a plain npz sliced out of one read; each distinct .npy header parsed once.
    Raises ValueError (or an I/O error) for anything that is not plain."""
    data = Path(path).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    out = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
            raise ValueError("not a plain npz")
        name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len  # local file header size
        raw = memoryview(data)[start:start + info.file_size]
        if bytes(raw[:6]) != b"\x93NUMPY":
            raise ValueError("not an npy member")
        size_bytes = 2 if raw[6] == 1 else 4  # format 1.0: uint16 header length, else uint32
        hlen = int.from_bytes(raw[8:8 + size_bytes], "little")
        header = bytes(raw[8 + size_bytes:8 + size_bytes + hlen])
        parsed = _NPY_HEADERS.get(header)
        if parsed is None:
            d = ast.literal_eval(header.decode("latin1"))
            dtype = np.dtype(d["descr"])
            if dtype.hasobject:
                raise ValueError("object array")
            parsed = _NPY_HEADERS[header] = (dtype, tuple(d["shape"]), bool(d["fortran_order"]))
        dtype, shape, fortran = parsed
        arr = np.frombuffer(raw, dtype, count=int(np.prod(shape)),
                            offset=8 + size_bytes + hlen).reshape(shape, order="F" if fortran else "C")
        out[info.filename[:-4]] = arr.item() if arr.ndim == 0 else arr.copy()
    return out


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
            return _rgb(im)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _rgb(im) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an open PIL image, the pixels a browser shows. PIL's own
    conversion clips a 16-bit grey PNG (mode I;16, or I in older Pillow) to 255, a white photo;
    browsers keep each value's high byte, as PIL does for 16-bit colour."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        grey = np.clip(np.asarray(im, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def image_size(path: Path, max_pixels: int | None = None,
               for_labelling: bool = False) -> tuple[int, int]:
    """(width, height) of an image without decoding its pixels. An image larger than
    ``max_pixels`` (default MAX_IMAGE_PIXELS) is refused: overlays are full-size masks, so a
    forged header (a decompression bomb) would otherwise become a huge allocation.
    ``for_labelling``: also refuse what Label Studio would show otherwise than PIL reads it: a
    file browsers do not show (SHOWN_BY_BROWSERS), an EXIF orientation that turns or mirrors it
    on screen (TURNED_ON_SCREEN)."""
    from PIL import Image, UnidentifiedImageError

    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as im:
            width, height, kind = im.size + (im.format,)
            orientation = _exif_orientation(im) if for_labelling else 1
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    if width * height > limit:
        raise DataError(f"image too large: {path} is {width}x{height}, over {limit} pixels")
    if for_labelling and kind not in SHOWN_BY_BROWSERS:
        raise DataError(f"{path} is a {kind} file (whatever its name says), which browsers "
                        f"(Label Studio) do not show: store the same pixels as PNG or JPEG in "
                        f"its place (e.g. convert FILE NAME.png, then remove FILE)")
    if orientation in TURNED_ON_SCREEN:
        raise DataError(
            f"{path} carries EXIF orientation {orientation}: browsers (Label Studio) show it "
            f"{TURNED_ON_SCREEN[orientation]}, while poses, overlays and pins are in its stored "
            f"pixels, so they would not line up. If its poses are in the stored pixels (as PIL "
            f"and MATLAB read a photo), remove the tag (exiftool -n -Orientation=1 FILE); if "
            f"not, store its pixels upright (mogrify -auto-orient FILE)")
    return width, height


def _exif_orientation(im) -> int:
    """The EXIF orientation of an open PIL image (1, upright, when it has none or a bad one)."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
        return int(value)
    except (TypeError, ValueError, SyntaxError, OSError, struct.error):  # damaged EXIF
        return 1


def write_image(path: Path, image: np.ndarray, **save_kwargs: Any) -> None:
    """Atomically write an (H, W[, 3|4]) uint8 array; the format follows the file suffix."""
    from PIL import Image

    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(path).suffix.lower(), "PNG")
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt, **save_kwargs)
    atomic_write_bytes(Path(path), buf.getvalue())
