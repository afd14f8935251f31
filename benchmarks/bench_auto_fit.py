#!/usr/bin/env python3
"""scripts/auto_fit.py end to end on a held-out-style dataset: the photographed CAD models are
not in the dataset's CAD/ folder. A benchmark that prints figures; it asserts nothing.

The dataset (written to a temporary folder, or --keep DIR): per category the model with the
highest index is photographed and left out of CAD/, the others form the CAD library; photos,
boxes and model-like initial poses (flips included) come from benchmarks/fit_dataset.py
(clutter, occluders, JPEG) and are written in the annotation-tool layout (images/,
annotations/, ground_truth/, CAD/). Real ImageNet3D meshes from ../shared/imagenet3d_cad where
present (categories with at least two models), else (and also) procedural ones.

auto_fit.py then runs as a user would run it (a subprocess, --workers N), once as it is and
once with --all-cads, and each output is read back and compared with the ground truth: median
rotation error, Acc@pi/6, Acc@pi/18, median centre error (px), objects made worse by more than
5 deg, lines with an error, per-object seconds p50 / p95 and the wall time.

    python benchmarks/bench_auto_fit.py [--objects 48] [--seed 11] [--workers 2] [--no-real]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from fit_dataset import HEIGHT, WIDTH, make_case, procedural_library, real_library  # noqa: E402
from pose6d.cad_library import CadMesh, write_off  # noqa: E402
from pose6d.camera import Pose  # noqa: E402
from pose6d.dataset import (GROUND_TRUTH, INITIAL, Dataset, ObjectKey, ObjectRecord,  # noqa: E402
                            write_record)
from pose6d.inout import write_image  # noqa: E402
from pose6d.pose_error import pose_rotation_error, summarize_errors  # noqa: E402

AUTO_FIT = REPO / "scripts" / "auto_fit.py"
PROCEDURAL_ONLY = ("mug", "dining_table")  # procedural categories whose names the real set lacks


def libraries(use_real: bool) -> dict[str, tuple[str, dict[int, CadMesh]]]:
    """category -> (source, models): real categories with >= 2 models, plus procedural ones (all
    procedural categories without ../shared)."""
    real = {c: m for c, m in (real_library() if use_real else {}).items() if len(m) >= 2}
    proc = procedural_library()
    out = {c: ("real", m) for c, m in real.items()}
    for c, m in proc.items():
        if c not in out and (c in PROCEDURAL_ONLY or not real):
            out[c] = ("procedural", m)
    return out


def write_dataset(root: Path, objects: int, seed: int, use_real: bool) -> int:
    """The held-out-style dataset under ``root``; returns the number of categories."""
    libs = libraries(use_real)
    for category, (_, models) in libs.items():
        for index, mesh in models.items():
            if index != max(models):
                write_off(root / "CAD" / category / f"{index:02d}.off", mesh.vertices, mesh.faces)
    names = sorted(libs)
    for i in range(objects):
        category = names[i % len(names)]
        source, models = libs[category]
        case = make_case(np.random.default_rng([seed, i]), f"{category}_{i}", category, source,
                         models, render_index=max(models))
        stem = f"heldout_{i:04d}"
        write_image(root / "images" / category / f"{stem}.JPEG", case.photo, quality=92)
        extra = {"bbox": case.bbox, "width": WIDTH, "height": HEIGHT, "class": category}
        write_record(root / INITIAL / category / f"{stem}_0.npz",
                     ObjectRecord(case.initial_pose, case.fit_mesh.index, extra))
        write_record(root / GROUND_TRUTH / category / f"{stem}_0.npz",
                     ObjectRecord(case.gt_pose, case.render_mesh.index, extra))
    return len(names)


def run_auto_fit(root: Path, out: Path, workers: int, all_cads: bool) -> float:
    """auto_fit.py as a user runs it; returns the wall time (s). Raises if it fails."""
    cmd = [sys.executable, str(AUTO_FIT), "--data-root", str(root), "--out", str(out),
           "--workers", str(workers), "--quiet"] + (["--all-cads"] if all_cads else [])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"auto_fit.py exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def read_fits(path: Path, dataset: Dataset) -> tuple[dict[str, Pose], list[float], int]:
    """The fitted poses by object key (the initial record's camera), seconds, error lines."""
    poses, seconds, errors = {}, [], 0
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if "error" in d:
            errors += 1
            continue
        start = dataset.read(ObjectKey.parse(d["object_key"])).pose
        poses[d["object_key"]] = Pose.from_degrees(
            d["azimuth"], d["elevation"], d["theta"], d["distance"], d["px"], d["py"],
            viewport=start.viewport)
        seconds.append(float(d["seconds"]))
    return poses, seconds, errors


def row(name: str, poses: dict[str, Pose], dataset: Dataset) -> tuple[str, float, float]:
    """A table row for ``poses`` (by key) against the ground truth; also (median rotation
    error deg, median centre error px)."""
    rot, centre, worse = [], [], 0
    for key, pose in poses.items():
        okey = ObjectKey.parse(key)
        gt, start = dataset.read(okey, GROUND_TRUTH).pose, dataset.read(okey).pose
        rot.append(pose_rotation_error(pose, gt))
        centre.append(math.hypot(pose.px - gt.px, pose.py - gt.py))
        worse += math.degrees(rot[-1] - pose_rotation_error(start, gt)) > 5.0
    s = summarize_errors(rot)
    c = float(np.median(centre))
    return (f"  {name:18s} {s['median_deg']:10.2f} {s['acc_pi6']:9.3f} {s['acc_pi18']:10.3f} "
            f"{c:17.2f} {worse:6d}/{len(poses)}", s["median_deg"], c)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=48)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2, help="auto_fit.py --workers")
    ap.add_argument("--no-real", action="store_true", help="procedural models only")
    ap.add_argument("--keep", type=Path, help="write the dataset here (an empty or new folder)")
    ap.add_argument("--quick", action="store_true", help="12 objects (for run_all.py)")
    args = ap.parse_args(argv)
    objects = 12 if args.quick else args.objects
    with tempfile.TemporaryDirectory(prefix="bench_auto_fit_") as tmp:
        root = args.keep or Path(tmp) / "data"
        categories = write_dataset(root, objects, args.seed, not args.no_real)
        dataset = Dataset(root)
        print(f"held-out-style dataset: {objects} objects in {categories} categories, the "
              f"photographed models not in CAD/ (seed {args.seed}) at {root}")
        print(f"  {'poses':18s} {'median rot':>10s} {'Acc@pi/6':>9s} {'Acc@pi/18':>10s} "
              f"{'median centre px':>17s} {'worse > 5 deg':>13s}")
        initial = {str(k): dataset.read(k).pose for k in dataset.objects()}
        line, rot0, c0 = row("initial", initial, dataset)
        print(line)
        figures = []
        for label, all_cads in (("auto_fit", False), ("auto_fit --all-cads", True)):
            out = Path(tmp) / f"fits_{int(all_cads)}.jsonl"
            wall = run_auto_fit(root, out, args.workers, all_cads)
            poses, seconds, errors = read_fits(out, dataset)
            line, rot1, c1 = row(label, poses, dataset)
            p50, p95 = np.percentile(seconds, [50, 95]) if seconds else (math.nan, math.nan)
            print(f"{line}   errors {errors}, per object p50 {p50:.2f} s, p95 {p95:.2f} s, "
                  f"wall {wall:.1f} s with {args.workers} workers")
            figures.append(f"figure: {label} median rotation error | {rot1:.2f} deg | initial | "
                           f"{rot0:.2f} deg")
            figures.append(f"figure: {label} median centre error | {c1:.2f} px | initial | "
                           f"{c0:.2f} px")
        print("\n".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
