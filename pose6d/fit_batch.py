"""Auto-fit every object of a dataset (the library behind scripts/auto_fit.py).

For each object the initial record (``annotations/<category>/<name>_<k>.npz``: the model's
pose, its CAD model and box) and the photo are read, the pose is fitted (``pose6d.fit``), and
one JSON line is written::

    {"object_key": "car/img_1_0", "azimuth": deg, "elevation": deg, "theta": deg,
     "distance": d, "px": px, "py": py, "cad_index": n, "score": s, "initial_score": s0,
     "seconds": t}

or, for an object that cannot be fitted (missing or unreadable photo, record or CAD model,
invalid pose), ``{"object_key": ..., "error": "<message>"}``; the other objects go on. Lines
come in the order of the keys. With ``all_cads`` every CAD model of the category is fitted and
the suggested one (``pose6d.fit.fit_cad``: the initial one unless another wins by a margin) is
written. Nothing in the dataset is modified.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from pose6d.dataset import Dataset, ObjectKey

_DATASET: Dataset | None = None  # one per worker process (keeps its CAD cache)


def _dataset(root: str) -> Dataset:
    global _DATASET
    if _DATASET is None or str(_DATASET.root) != root:
        _DATASET = Dataset(root)
    return _DATASET


def fit_object(root: str | Path, key: str, all_cads: bool = False) -> dict[str, Any]:
    """Fit one object; returns its JSON-ready line (see the module docstring). Never raises for
    a bad object: the line then has an "error" message."""
    from pose6d.fit import fit_cad, fit_pose
    from pose6d.inout import read_image

    t0 = time.perf_counter()
    try:
        okey = ObjectKey.parse(key)
        dataset = _dataset(str(root))
        record = dataset.read(okey)
        photo = read_image(dataset.image_path(okey))
        if all_cads:
            meshes = {i: dataset.cad.mesh(okey.category, i)
                      for i in dataset.cad.indices(okey.category)}
            if not meshes:
                raise ValueError(f"no CAD models for category {okey.category!r}")
            cad = fit_cad(photo, meshes, record.pose, record.bbox,
                          initial_index=record.cad_index)
            cad_index, result = cad.suggested_index, cad.results[cad.suggested_index]
        else:
            mesh = dataset.cad.mesh(okey.category, record.cad_index)
            cad_index, result = record.cad_index, fit_pose(photo, mesh, record.pose, record.bbox)
    except (ValueError, OSError) as exc:  # DataError, CadError, FitError, InvalidPoseError...
        return {"object_key": key, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one broken object must not stop the batch
        return {"object_key": key, "error": f"{type(exc).__name__}: {exc}"}
    deg = result.pose.as_degrees()
    return {"object_key": str(okey), "azimuth": deg["azimuth"], "elevation": deg["elevation"],
            "theta": deg["theta"], "distance": deg["distance"], "px": deg["px"],
            "py": deg["py"], "cad_index": int(cad_index), "score": round(result.score, 6),
            "initial_score": round(result.initial_score, 6),
            "seconds": round(time.perf_counter() - t0, 4)}


def _work(args: tuple[str, str, bool]) -> dict[str, Any]:
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
    from tqdm import tqdm

    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"data root is not a folder: {root}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    todo = select_keys(Dataset(root), keys, categories)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), k, bool(all_cads)) for k in todo]
    fitted = errors = 0
    t0 = time.perf_counter()
    with open(out, "w", encoding="utf-8") as fh, \
            tqdm(total=len(jobs), desc="auto-fit", unit="obj", file=sys.stderr,
                 disable=not progress) as bar:
        if int(workers) == 1 or len(jobs) <= 1:
            lines = map(_work, jobs)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(int(workers), len(jobs)))
            lines = pool.imap(_work, jobs)
        try:
            for line in lines:
                fh.write(json.dumps(line) + "\n")
                fh.flush()
                if "error" in line:
                    errors += 1
                else:
                    fitted += 1
                bar.update(1)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    return {"objects": len(jobs), "fitted": fitted, "errors": errors, "out": str(out),
            "seconds": round(time.perf_counter() - t0, 3)}
