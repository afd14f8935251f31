"""Auto-fit every object of a dataset (the library behind scripts/auto_fit.py).

For each object the initial record (``annotations/<category>/<name>_<k>.npz``: the model's
pose, its CAD model and box) and the photo are read, the pose is fitted (``pose6d.fitting.fit``), and
one JSON line is written::

    {"object_key": "car/img_1_0", "azimuth": deg, "elevation": deg, "theta": deg,
     "distance": d, "px": px, "py": py, "cad_index": n, "score": s, "initial_score": s0,
     "seconds": t}

or, for an object that cannot be fitted (missing or unreadable photo, record or CAD model,
invalid pose), ``{"object_key": ..., "error": "<message>"}``; the other objects go on. Lines
come in the order of the keys. With ``all_cads`` every CAD model of the category is fitted and
the suggested one (``pose6d.fitting.cad.fit_cad``: the initial one unless another wins by a margin) is
written. Nothing in the dataset is modified.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from pose6d.cad_library import CadLibrary
from pose6d.camera import Pose
from pose6d.dataset import Dataset, ObjectKey
from pose6d.fitting.cache import FitCache

_DATASET: Dataset | None = None  # one per worker process (keeps its CAD cache)


def _dataset(root: str) -> Dataset:
    global _DATASET
    if _DATASET is None or str(_DATASET.root) != root:
        _DATASET = Dataset(root)
    return _DATASET


LINE_FIELDS = ("object_key", "azimuth", "elevation", "theta", "distance", "px", "py",
               "cad_index", "score", "initial_score", "seconds")


def fit_start(photo, cad: CadLibrary, key: ObjectKey, start: Pose, cad_index: int,
              bbox=None, all_cads: bool = False) -> dict[str, Any]:
    """Fit one object from the pose ``start`` with CAD model ``cad_index``; its JSON line.

    photo: (H, W, 3) uint8 RGB or an ImageEvidence (then ``bbox`` is ignored). bbox: the
    object's (x1, y1, x2, y2) in pixels or None. all_cads: fit every model of the category and
    keep the suggested one (pose6d.fitting.cad.fit_cad). Raises ValueError / OSError for unusable inputs
    (FitError, CadError, InvalidPoseError...).
    """
    from pose6d.fitting.fit import fit_pose
    from pose6d.fitting.cad import fit_cad

    t0 = time.perf_counter()
    if all_cads:
        meshes = {i: cad.mesh(key.category, i) for i in cad.indices(key.category)}
        if not meshes:
            raise ValueError(f"no CAD models for category {key.category!r}")
        found = fit_cad(photo, meshes, start, bbox, initial_index=cad_index)
        cad_index, result = found.suggested_index, found.results[found.suggested_index]
    else:
        result = fit_pose(photo, cad.mesh(key.category, cad_index), start, bbox)
    deg = result.pose.as_degrees()
    return {"object_key": str(key), "azimuth": deg["azimuth"], "elevation": deg["elevation"],
            "theta": deg["theta"], "distance": deg["distance"], "px": deg["px"],
            "py": deg["py"], "cad_index": int(cad_index), "score": round(result.score, 6),
            "initial_score": round(result.initial_score, 6),
            "seconds": round(time.perf_counter() - t0, 4)}


def fit_object(root: str | Path, key: str, all_cads: bool = False,
               cache: bool = False) -> dict[str, Any]:
    """Fit one object from its initial record; returns its JSON-ready line (see the module
    docstring). Never raises for a bad object: the line then has an "error" message.

    cache: reuse and keep the fit in the dataset's FitCache (pose6d.fitting.cache; what the backend
    shows at prefill). Fits over all CAD models are not cached.
    """
    from pose6d.inout import read_image

    try:
        okey = ObjectKey.parse(key)
        dataset = _dataset(str(root))
        record = dataset.read(okey)
        fits = FitCache(dataset.root) if cache and not all_cads else None
        hit = fits.get(okey, record.pose, record.cad_index) if fits is not None else None
        if hit is not None:
            return {name: hit[name] for name in LINE_FIELDS}
        photo = read_image(dataset.image_path(okey))
        line = fit_start(photo, dataset.cad, okey, record.pose, record.cad_index, record.bbox,
                         all_cads)
        if fits is not None:
            fits.put(okey, record.pose, record.cad_index, line)
        return line
    except (ValueError, OSError) as exc:  # DataError, CadError, FitError, InvalidPoseError...
        return {"object_key": key, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one broken object must not stop the batch
        return {"object_key": key, "error": f"{type(exc).__name__}: {exc}"}


def _work(args: tuple[str, str, bool, bool]) -> dict[str, Any]:
    return fit_object(*args)


def select_keys(dataset: Dataset, keys: Iterable[str | ObjectKey] | None,
                categories: Iterable[str] | None) -> list[str]:
    """The object keys to fit: ``keys`` as given (kept even when malformed or unknown, so they
    get an error line), else every object with an initial record, optionally only in
    ``categories``."""
    cats = list(categories) if categories else None
    if keys is not None:
        out = [str(k) for k in keys]
        return [k for k in out if not cats or k.split("/", 1)[0] in cats]
    return [str(k) for k in dataset.objects(categories=cats)]


def fit_lines(data_root: str | Path, keys: Iterable[str | ObjectKey], workers: int = 1,
              all_cads: bool = False, cache: bool = False, progress: bool = True,
              desc: str = "auto-fit") -> Iterator[dict[str, Any]]:
    """Fit the objects ``keys`` of the dataset at ``data_root``; yields their lines in order.

    workers: processes (1 = in this process; each fit uses one core). all_cads, cache: as for
    fit_object. progress: a tqdm bar on stderr. Raises ValueError when workers < 1.
    """
    from tqdm import tqdm

    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [(str(data_root), str(k), bool(all_cads), bool(cache)) for k in keys]
    with tqdm(total=len(jobs), desc=desc, unit="obj", file=sys.stderr,
              disable=not progress) as bar:
        if int(workers) == 1 or len(jobs) <= 1:
            lines, pool = map(_work, jobs), None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(int(workers), len(jobs)))
            lines = pool.imap(_work, jobs)
        try:
            for line in lines:
                bar.update(1)
                yield line
        finally:
            if pool is not None:
                pool.terminate()  # a consumer that stops early must not wait for the rest
                pool.join()


def fit_dataset(data_root: str | Path, out_path: str | Path,
                keys: Iterable[str | ObjectKey] | None = None,
                categories: Iterable[str] | None = None, workers: int = 1,
                all_cads: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fit the objects of the dataset at ``data_root`` and write JSON lines to ``out_path``.

    keys: object keys ("category/name_k"); None = every object (of ``categories``).
    workers: processes (1 = in this process; each fit uses one core). all_cads: try every CAD
    model of the category. progress: a tqdm bar on stderr.
    Returns {"objects": n, "fitted": n_ok, "errors": n_err, "out": path, "seconds": t}.
    Raises ValueError when data_root is not a folder or workers < 1.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"data root is not a folder: {root}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    todo = select_keys(Dataset(root), keys, categories)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fitted = errors = 0
    t0 = time.perf_counter()
    with open(out, "w", encoding="utf-8") as fh:
        for line in fit_lines(root, todo, workers, all_cads, progress=progress):
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            if "error" in line:
                errors += 1
            else:
                fitted += 1
    return {"objects": len(todo), "fitted": fitted, "errors": errors, "out": str(out),
            "seconds": round(time.perf_counter() - t0, 3)}
