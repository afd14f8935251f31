#!/usr/bin/env python3
"""Export throughput from the synced folder: objects per second for each format (ImageNet3D,
BOP, table), reading the labels included, next to a naive baseline measured in the same run.

Baseline: the obvious script: for every object, np.load the npz once per field it needs, then
write each image's npz one after another (atomic write per file, as ours). It runs on a subset
(--baseline-objects) because it is slow; its rate is objects per second all the same.
Goal: 10,000 objects in under 30 s in each format. Records are synthesised (2 objects per image,
10 categories x 2 box models); photos need not exist (BOP runs with --bop-images none).

Derived labels (rendered from the poses: every object ray-cast, a z-buffer per photo): coco,
correspondences and bop + masks, in the same table; goal 10,000 objects in under 2 min each
(--no-derived leaves them out). The synthesised poses are random (objects from a few pixels to
larger than the 640x480 photo), so the render cost is that of a mixed bag of sizes.
"""
from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from ls_admin.export_bop import export_bop  # noqa: E402
from ls_admin.export_coco import export_coco  # noqa: E402
from ls_admin.export_correspondences import export_correspondences  # noqa: E402
from ls_admin.export_imagenet3d import export_imagenet3d  # noqa: E402
from ls_admin.export_source import labels_from_synced  # noqa: E402
from ls_admin.export_table import export_table  # noqa: E402
from pose6d.cad_library import write_off  # noqa: E402
from pose6d.camera import Pose  # noqa: E402
from pose6d.dataset import RELEASED_FIELDS, SYNCED, Dataset, ObjectRecord, write_image_annotations  # noqa: E402

GOAL_S = 30.0
DERIVED_GOAL_S = 120.0
DERIVED = ("coco", "correspondences", "bop + masks")
CATEGORIES = [f"cat{i:02d}" for i in range(10)]


def box(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)]) / 2.0
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def synthesise(root: Path, n: int, seed: int = 0) -> Dataset:
    """``n`` synced records (plain np.savez: setup speed, not what is measured) plus CAD."""
    rng = np.random.default_rng(seed)
    for c in CATEGORIES:
        for i in (1, 2):
            write_off(root / "CAD" / c / f"{i:02d}.off", *box(1.0, 0.5 + 0.1 * i, 0.4))
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for j in range(n):
        cat, name, k = CATEGORIES[j % len(CATEGORIES)], f"img{j // 2:06d}", j % 2
        pose = Pose(*rng.uniform(-3, 3, 3), rng.uniform(2, 20), *rng.uniform(50, 500, 2), 2000.0)
        record = ObjectRecord(pose, int(1 + j % 2), {
            "bbox": np.array([10.0, 20.0, 200.0, 180.0]), "width": 640, "height": 480,
            "annotator": "7", "object_status": "status_good", "dense": "dense_no",
            "ls_annotation_id": j + 1, "ls_task_id": j + 1, "ls_project_id": 1,
            "updated_at": "2025-03-01T12:00:00.000000+00:00"})
        path = root / SYNCED / cat / f"{name}_{k}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **record.to_npz_dict())
        path.write_bytes(buf.getvalue())
    return Dataset(root)


def naive_export(dataset: Dataset, out: Path, limit: int) -> int:
    """The baseline: one np.load per field per object, sequential atomic writes."""
    per_image: dict[tuple[str, str], list[dict]] = defaultdict(list)
    keys = dataset.objects(SYNCED)[:limit]
    fields = [f for f in RELEASED_FIELDS if f not in ("principal", "class")]
    for key in keys:
        path = dataset.record_path(key, SYNCED)
        obj = {f: np.load(path, allow_pickle=False)[f] for f in fields}
        obj["principal"] = np.array([obj["px"], obj["py"]])
        obj["class"] = key.category
        per_image[(key.category, key.name)].append(obj)
    for (cat, name), objs in per_image.items():
        write_image_annotations(out / cat / f"{name}.npz", objs)
    return len(keys)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--baseline-objects", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=8, help="file-writing threads")
    parser.add_argument("--render-workers", type=int, default=2,
                        help="photos rendered at a time in the derived exports (default 2)")
    parser.add_argument("--no-derived", action="store_true",
                        help="only the pose exports (no coco / correspondences / bop masks)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pose6d-bench-export-"))
    try:
        t = timed(lambda: synthesise(tmp / "data", args.objects))
        dataset = Dataset(tmp / "data")
        print(f"synthesised {args.objects} synced records in {t:.1f} s")
        runs = {
            "imagenet3d": lambda out: export_imagenet3d(labels_from_synced(dataset), out,
                                                        workers=args.workers, progress=False),
            "bop": lambda out: export_bop(labels_from_synced(dataset), dataset, out,
                                          images="none", progress=False, masks=False),
            "table": lambda out: export_table(labels_from_synced(dataset), out, progress=False),
        }
        rw = args.render_workers
        if not args.no_derived:
            runs.update({
                "coco": lambda out: export_coco(labels_from_synced(dataset), dataset, out,
                                                workers=rw, progress=False),
                "correspondences": lambda out: export_correspondences(
                    labels_from_synced(dataset), dataset, out, workers=rw, progress=False),
                "bop + masks": lambda out: export_bop(labels_from_synced(dataset), dataset, out,
                                                      images="none", progress=False, workers=rw),
            })
        rows = []
        n_base = min(args.baseline_objects, args.objects)
        t_base = timed(lambda: naive_export(dataset, tmp / "baseline", n_base))
        base_rate = n_base / t_base
        rows.append(("baseline (naive imagenet3d)", n_base, t_base, base_rate))
        for name, run in runs.items():
            t = timed(lambda: run(tmp / name.replace(" + ", "_")))
            rows.append((name, args.objects, t, args.objects / t))
        print(f"\n{'export':<28} {'objects':>8} {'seconds':>8} {'objects/s':>10} {'x baseline':>10}"
              f" {'10k objects':>11}")
        for name, n, t, rate in rows:
            print(f"{name:<28} {n:>8d} {t:>8.2f} {rate:>10.0f} {rate / base_rate:>10.1f}"
                  f" {10_000 / rate:>10.1f}s")
        worst = max(10_000 / r[3] for r in rows[1:] if r[0] not in DERIVED)
        print(f"\ngoal: 10,000 objects in < {GOAL_S:.0f} s per format: "
              f"{'met' if worst < GOAL_S else 'NOT met'} (slowest {worst:.1f} s)")
        met = worst < GOAL_S
        derived = [10_000 / r[3] for r in rows if r[0] in DERIVED]
        if derived:
            print(f"goal: 10,000 objects in < {DERIVED_GOAL_S:.0f} s per derived format: "
                  f"{'met' if max(derived) < DERIVED_GOAL_S else 'NOT met'} "
                  f"(slowest {max(derived):.1f} s)")
            met = met and max(derived) < DERIVED_GOAL_S
        return 0 if met else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
