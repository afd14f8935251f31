#!/usr/bin/env python3
"""Auto-fit (pose6d.fitting.fit) on the demo dataset and on the harder set (benchmarks/fit_dataset.py):
initial poses against fitted ones. A benchmark that prints figures; it asserts nothing.

For each set, rows for the initial and the fitted poses: median rotation error (deg),
Acc@pi/6, Acc@pi/18, median centre error (px), plain and ("sym") up to the photographed
model's symmetry about its vertical axis (pose_error.symmetric_rotation_error: a bottle's
azimuth, a rectangular table's half turn); then 180-deg flips corrected (initial error
> 90 deg, fitted < 30) and made (the reverse), objects made worse by more than 5 deg, and the fit
time p50 / p95. The demo set fits each object's initial CAD model (sometimes the wrong one,
as the demo's "model" picks); the harder set always fits another model than the photographed
one. A timing set fits a ~10k-triangle mesh (procedural tall mug 9.7k, real car 03 13.8k) to
640x480 photos. Everything runs in this process on one core (ray casting with nthreads=1,
OpenCV with one thread). Goals on the harder set (issue 11) are printed as met / not met.

    python benchmarks/bench_fit.py [--demo-objects 40] [--hard 48] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from fit_dataset import HardCase, make_hard_set, make_timing_set  # noqa: E402
from pose6d.camera import Pose  # noqa: E402
from pose6d.fitting.fit import fit_pose  # noqa: E402
from pose6d.fitting.turns import fit_all_round  # noqa: E402
from pose6d.pose_error import (pose_rotation_error, summarize_errors,  # noqa: E402
                               symmetric_rotation_error)
from pose6d.fitting.silhouette import mesh_symmetry  # noqa: E402


def demo_cases(objects: int, seed: int, folder: Path) -> list[HardCase]:
    """The demo dataset's objects as cases (the fit gets the initial record's CAD model)."""
    from pose6d.dataset import GROUND_TRUTH, Dataset
    from pose6d.demo.dataset import make_demo_dataset
    from pose6d.inout import read_image

    make_demo_dataset(folder, objects, seed, progress=False)
    ds = Dataset(folder)
    cases = []
    for key in ds.objects():
        init, gt = ds.read(key), ds.read(key, GROUND_TRUTH)
        mesh = ds.cad.mesh(key.category, init.cad_index)
        kind = "flip180" if math.degrees(pose_rotation_error(init.pose, gt.pose)) > 90 else "small"
        cases.append(HardCase(str(key), key.category, "demo", read_image(ds.image_path(key)),
                              init.bbox, gt.pose, init.pose,
                              ds.cad.mesh(key.category, gt.cad_index), mesh, {}, kind, math.nan))
    return cases


def centre_error(a: Pose, b: Pose) -> float:
    return math.hypot(a.px - b.px, a.py - b.py)


def run(cases: list[HardCase], mode: str = "full") -> dict[str, np.ndarray]:
    """Fit every case; arrays of initial / fitted rotation errors (deg; rot0s / rot1s: up to
    the photographed model's symmetry about its vertical axis), centre errors (px), fit
    seconds."""
    out = {k: [] for k in ("rot0", "rot1", "rot0s", "rot1s", "c0", "c1", "seconds")}
    for case in cases:
        r = fit_pose(case.photo, case.fit_mesh, case.initial_pose, case.bbox, nthreads=1,
                     mode=mode)
        out["rot0"].append(math.degrees(pose_rotation_error(case.initial_pose, case.gt_pose)))
        out["rot1"].append(math.degrees(pose_rotation_error(r.pose, case.gt_pose)))
        symmetry = mesh_symmetry(case.render_mesh)
        for key, pose in (("rot0s", case.initial_pose), ("rot1s", r.pose)):
            out[key].append(math.degrees(symmetric_rotation_error(pose, case.gt_pose, symmetry)))
        out["c0"].append(centre_error(case.initial_pose, case.gt_pose))
        out["c1"].append(centre_error(r.pose, case.gt_pose))
        out["seconds"].append(r.seconds)
    return {k: np.asarray(v) for k, v in out.items()}


def report(name: str, res: dict[str, np.ndarray]) -> dict[str, float]:
    """Print the table for one set; returns the figures ("initial" / "fitted"; with "sym",
    the rotation errors up to the photographed model's symmetry: a bottle's azimuth and a
    rectangular table's half turn cannot be told apart, ImageNet3D's rules ignore them)."""
    n = len(res["rot0"])
    print(f"\n{name}: {n} objects")
    print(f"  {'pose':16s} {'median rot':>11s} {'Acc@pi/6':>9s} {'Acc@pi/18':>10s} "
          f"{'median centre px':>17s}")
    figs = {}
    for label, rot, cen in (("initial", res["rot0"], res["c0"]),
                            ("fitted", res["rot1"], res["c1"]),
                            ("initial sym", res["rot0s"], res["c0"]),
                            ("fitted sym", res["rot1s"], res["c1"])):
        s = summarize_errors(np.radians(rot))
        figs[label] = dict(s, centre=float(np.median(cen)))
        print(f"  {label:16s} {s['median_deg']:11.2f} {s['acc_pi6']:9.3f} "
              f"{s['acc_pi18']:10.3f} {np.median(cen):17.2f}")
    flipped = res["rot0"] > 90
    fixed = int(np.sum(flipped & (res["rot1"] < 30)))
    made = int(np.sum(~flipped & (res["rot1"] > 90)))
    worse = int(np.sum(res["rot1"] - res["rot0"] > 5))
    p50, p95 = np.percentile(res["seconds"], [50, 95])
    print(f"  flips corrected {fixed}/{int(flipped.sum())}, flips made {made}; "
          f"made worse by > 5 deg: {worse}/{n} ({worse / n:.1%}); "
          f"fit time p50 {p50:.2f} s, p95 {p95:.2f} s")
    worse_sym = int(np.sum(res["rot1s"] - res["rot0s"] > 5))
    figs.update(worse=worse / n, worse_sym=worse_sym / n, p50=p50, p95=p95)
    return figs


def goals(f: dict, sym: bool = False) -> None:
    """Issue 11's goals for the harder set (sym: rotation errors up to the object's symmetry)."""
    i, o = (f["initial sym"], f["fitted sym"]) if sym else (f["initial"], f["fitted"])
    worse = f["worse_sym"] if sym else f["worse"]
    rows = [
        ("median rotation error <= half the initial",
         f"{o['median_deg']:.2f} vs {i['median_deg'] / 2:.2f}",
         o["median_deg"] <= i["median_deg"] / 2),
        ("Acc@pi/18 up by >= 0.25", f"{o['acc_pi18'] - i['acc_pi18']:+.3f}",
         o["acc_pi18"] - i["acc_pi18"] >= 0.25),
        ("median centre error <= half the initial", f"{o['centre']:.2f} vs {i['centre'] / 2:.2f}",
         o["centre"] <= i["centre"] / 2),
        ("fewer than 1 in 20 made worse (> 5 deg)", f"{worse:.1%}", worse < 0.05),
    ]
    print(f"\nGoals on the harder set{' (rotation up to the symmetry)' if sym else ''}:")
    for text, value, ok in rows:
        print(f"  [{'met' if ok else 'NOT met'}] {text}: {value}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo-objects", type=int, default=40)
    p.add_argument("--hard", type=int, default=48, help="harder-set objects (default 48)")
    p.add_argument("--timing", type=int, default=12, help="~10k-triangle timing fits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-real", action="store_true", help="procedural models only")
    p.add_argument("--quick", action="store_true",
                   help="12 demo objects, 12 harder ones, 4 timing fits (for run_all.py)")
    args = p.parse_args(argv)
    if args.quick:
        args.demo_objects, args.hard, args.timing = 12, 12, 4
    import cv2

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        demo = report(f"demo dataset (seed {args.seed})",
                      run(demo_cases(args.demo_objects, args.seed, Path(tmp) / "demo")))
    del demo
    hard_cases = make_hard_set(args.hard, args.seed, use_real=not args.no_real)
    sources = sorted({c.source for c in hard_cases})
    hard = report(f"harder set (seed {args.seed}; {', '.join(sources)} models; the fit gets "
                  f"another model than the photographed one)", run(hard_cases))
    report("harder set, centre and distance only (fit_translation: rotation kept)",
           run(hard_cases, mode="translation"))
    if args.timing:
        timing_cases = make_timing_set(args.timing, args.seed + 1)
        timing = run(timing_cases)
        p50, p95 = np.percentile(timing["seconds"], [50, 95])
        print(f"\n~10k-triangle mesh at 640x480, one core: fit time p50 {p50:.2f} s, "
              f"p95 {p95:.2f} s over {args.timing} fits (goal p95 <= 1.5 s)")
        around = [fit_all_round(c.photo, c.fit_mesh, c.initial_pose, c.bbox).seconds
                  for c in timing_cases]
        a50, a95 = np.percentile(around, [50, 95])
        print(f"  fitaz (azimuth all round, 12 starts): p50 {a50:.2f} s, p95 {a95:.2f} s")
        print(f"figure: fit p95, ~10k triangles | {p95 * 1000:.0f} ms | goal | 1500 ms")
    goals(hard)
    goals(hard, sym=True)
    i, o = hard["initial"], hard["fitted"]
    print(f"figure: harder set median rotation error, fitted | {o['median_deg']:.2f} deg | "
          f"initial | {i['median_deg']:.2f} deg")
    print(f"figure: harder set median centre error, fitted | {o['centre']:.2f} px | "
          f"initial | {i['centre']:.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
