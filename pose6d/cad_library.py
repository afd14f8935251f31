"""CAD meshes in the ImageNet3D layout ``CAD/<category>/<NN>.off``.

``cad_index`` is 1-based and may have gaps; a category name is a whole directory name, never
split on "_" (the original tool broke on multi-word categories such as punching_bag).
"""
from __future__ import annotations

import dataclasses
import functools
import re
import threading
from pathlib import Path

import numpy as np

from pose6d.errors import DataError

CAD_FILE_RE = re.compile(r"^(\d+)\.off$", re.IGNORECASE)


class CadError(DataError):
    """A missing, empty or corrupt CAD mesh, or an unknown category / index. Names the file."""


@dataclasses.dataclass
class CadMesh:
    """One triangle mesh plus what rendering needs, built once and shared between threads.

    vertices: (N, 3) float64 world units (z up). faces: (M, 3) int32.
    """

    category: str
    index: int
    path: Path
    vertices: np.ndarray
    faces: np.ndarray
    _scene: object = dataclasses.field(default=None, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def radius(self) -> float:
        """Largest distance of a vertex from the origin (the point the camera looks at)."""
        return float(np.sqrt((self.vertices ** 2).sum(axis=1).max()))

    @property
    def scene(self):
        """Open3D RaycastingScene of this mesh (built lazily; casting is thread-safe)."""
        if self._scene is None:
            with self._lock:
                if self._scene is None:
                    import open3d as o3d

                    mesh = o3d.t.geometry.TriangleMesh()
                    mesh.vertex.positions = o3d.core.Tensor(self.vertices.astype(np.float32))
                    mesh.triangle.indices = o3d.core.Tensor(self.faces.astype(np.int32))
                    scene = o3d.t.geometry.RaycastingScene()
                    scene.add_triangles(mesh)
                    self._scene = scene
        return self._scene


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh strictly: vertices (N, 3) float64 and triangles (M, 3) int32.

    Polygons with more than three corners are fan-triangulated. Raises CadError naming the file
    for a missing, empty, truncated or otherwise corrupt file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except FileNotFoundError:
        raise CadError(f"CAD file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CadError(f"cannot read CAD file {path}: {exc}") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    tokens = " ".join(ln for ln in lines if ln).split()
    if not tokens:
        raise CadError(f"CAD file is empty: {path}")
    if tokens[0].upper() == "OFF":
        tokens = tokens[1:]
    elif tokens[0].upper().startswith("OFF"):  # "OFF123 456 0" glued header
        tokens = [tokens[0][3:]] + tokens[1:]
    else:
        raise CadError(f"not an OFF file (no OFF header): {path}")
    try:
        n_vert, n_face = int(tokens[0]), int(tokens[1])
        body = tokens[3:]
        vertices = np.array(body[: 3 * n_vert], dtype=np.float64).reshape(n_vert, 3)
        rest = body[3 * n_vert:]
        faces: list[list[int]] = []
        pos = 0
        for _ in range(n_face):
            k = int(rest[pos])
            corners = [int(v) for v in rest[pos + 1: pos + 1 + k]]
            if k < 3 or len(corners) != k:
                raise ValueError("bad face record")
            faces.extend([corners[0], corners[i], corners[i + 1]] for i in range(1, k - 1))
            pos += 1 + k
    except (IndexError, ValueError) as exc:
        raise CadError(f"corrupt OFF file {path}: {exc}") from None
    if n_vert == 0 or not faces:
        raise CadError(f"CAD mesh has no vertices or faces: {path}")
    tri = np.asarray(faces, dtype=np.int64)
    if not np.isfinite(vertices).all():
        raise CadError(f"corrupt OFF file {path}: non-finite vertex coordinates")
    if tri.min() < 0 or tri.max() >= n_vert:
        raise CadError(f"corrupt OFF file {path}: face index out of range 0..{n_vert - 1}")
    return vertices, tri.astype(np.int32)


def write_off(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as OFF (vertices (N, 3), faces (M, 3))."""
    from pose6d.inout import atomic_write_bytes

    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices, dtype=np.float64)]
    lines += [f"3 {a} {b} {c}" for a, b, c in np.asarray(faces, dtype=np.int64)]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode("ascii"))


class CadLibrary:
    """The CAD folder of a dataset: ``root/<category>/<NN>.off``; meshes cached after first load."""

    def __init__(self, root: str | Path, cache_size: int = 256):
        self.root = Path(root)
        self._load = functools.lru_cache(maxsize=cache_size)(self._load_uncached)

    def categories(self) -> list[str]:
        """Category names that have at least one mesh, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.indices(p.name))

    def indices(self, category: str) -> list[int]:
        """Sorted 1-based cad indices available for ``category`` (may have gaps)."""
        folder = self._category_dir(category)
        if not folder.is_dir():
            return []
        found = (CAD_FILE_RE.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, category: str, index: int) -> Path:
        """Path of one mesh; raises CadError for an unknown category or index."""
        folder = self._category_dir(category)
        if not folder.is_dir():
            raise CadError(f"unknown category {category!r}: no folder {folder}")
        available = self.indices(category)
        if int(index) not in available:
            raise CadError(f"category {category!r} has no CAD model {index} "
                           f"(available: {available}) in {folder}")
        for name in (f"{int(index):02d}.off", f"{int(index)}.off"):
            if (folder / name).exists():
                return folder / name
        return next(p for p in folder.iterdir() if (m := CAD_FILE_RE.match(p.name))
                    and int(m.group(1)) == int(index))

    def mesh(self, category: str, index: int) -> CadMesh:
        """The loaded mesh (cached); raises CadError naming the file when it cannot be used."""
        return self._load(category, int(index))

    def _load_uncached(self, category: str, index: int) -> CadMesh:
        path = self.path(category, index)
        vertices, faces = read_off(path)
        return CadMesh(category, index, path, vertices, faces)

    def _category_dir(self, category: str) -> Path:
        if not category or "/" in category or "\\" in category or category in (".", ".."):
            raise CadError(f"invalid category name {category!r}")
        return self.root / category
