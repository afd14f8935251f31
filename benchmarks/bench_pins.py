#!/usr/bin/env python3
"""Pins (pose6d.pins.solve_pins) against a naive least-squares solver, same cases, same run.

Each case is a photo of one mesh of a category (the "photographed" model, left out of the
library) at a known pose, and the library's other model of the category shown at a start pose
whose azimuth is 30-180 deg off (elevation, theta, distance and centre a little off too). The
simulated annotator clicks a point of the library model on the overlay (a visible surface point,
the pins spread over the object) and then the nearest point of the photographed model in the
photo (its projection at the true pose, visible there, with 2 px noise). Real ImageNet3D meshes
from ../shared/imagenet3d_cad (categories with two or more models) when present, else the
project's procedural models.

Rows for 4 and 6 pins: median rotation error, share within 30 deg (Acc@pi/6), solve time p50 /
p95, for solve_pins (its points sliding along their normals and the model stretching along its
axes, and the points held without a stretch: pose6d.fitting.pins.SLIDE_FRACTION, pin_solve.
STRETCH_SIGMA; also by category: where two instances differ most, e.g. a deep and a thin
monitor, the pins' nearest points disagree most) and for the baseline (scipy least_squares,
plain squared loss, restarted every 30 deg of azimuth from the pose shown, the lowest cost kept;
the same model points). A row with starts 20 deg off in elevation as well shows where the prior
(the elevation shown) holds the answer back, and what ``e=.. solve`` then gives (the elevation
set by eye, 3 deg off). A row on photos 2x and 4x as large (objects and click noise as
many times larger in pixels) shows the solve against the same one in each photo's own pixels
(pin_solve.REFERENCE_RADIUS_PX). A timing set solves on a ~10k-triangle model (the
real car 03, 13.8k, or the procedural tall mug, 9.7k). A last row solves 30 exact pins (no click
noise) per object: the error that the difference between the two instances leaves by itself, by
category. Issue 21's goals are printed as met / not met. One process, one core for ray casting.

    python benchmarks/bench_pins.py [--objects 80] [--seed 0] [--quick]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from fit_dataset import SHARED_CAD, procedural_library, real_library  # noqa: E402
from pose6d.cad_library import CadMesh  # noqa: E402
from pose6d.camera import Pose, project_points  # noqa: E402
from pose6d.pins import model_points, solve_pins  # noqa: E402
from pose6d.pose_error import pose_rotation_error, symmetric_rotation_error  # noqa: E402
from pose6d.fitting.silhouette import mesh_symmetry  # noqa: E402
from pose6d.renderer import closest_surface, render, surface_points  # noqa: E402

WIDTH, HEIGHT, VIEWPORT = 640, 480, 3000.0
NOISE_PX = 2.0
ELEVATION_OFF = 20.0  # deg: the row of starts far off in elevation too
SET_NOISE_DEG = 3.0  # ... where the annotator then sets the elevation by eye, this far off
VISIBLE_TOL = 0.02  # of the mesh radius: the photo's ray must hit the clicked point itself
LARGER_PHOTOS = (2.0, 4.0)  # the row of photos this many times WIDTH x HEIGHT


def make_case(rng, library: CadMesh, photographed: CadMesh, count: int,
              noise_px: float = NOISE_PX, elevation_off: float = 0.0, scale: float = 1.0):
    """(true pose, start pose, pins) or None when too few points are visible in both.
    ``elevation_off`` (deg): the start's elevation that much further off (upwards, downwards
    for a photo from above 45 deg). ``scale``: the photo that many times WIDTH x HEIGHT, the
    object and the clicks' noise as many times larger in pixels (a larger photo shown to fit
    the same screen)."""
    radius = photographed.radius
    width, height, viewport = round(WIDTH * scale), round(HEIGHT * scale), VIEWPORT * scale
    truth = Pose.from_degrees(rng.uniform(-180, 180), rng.uniform(0, 35), rng.normal(0, 4),
                              VIEWPORT * 2 * radius / rng.uniform(220, 380),
                              scale * rng.uniform(240, 400), scale * rng.uniform(190, 290),
                              viewport=viewport)
    off = rng.choice([-1.0, 1.0]) * rng.uniform(30, 180)
    deg = truth.as_degrees()
    lift = elevation_off if deg["elevation"] < 45 else -elevation_off
    start = Pose.from_degrees(deg["azimuth"] + off, float(np.clip(deg["elevation"] + lift
                                                                  + rng.normal(0, 6), -89, 89)),
                              deg["theta"] + rng.normal(0, 4),
                              deg["distance"] * math.exp(rng.normal(0, 0.1)),
                              deg["px"] + scale * rng.normal(0, 15),
                              deg["py"] + scale * rng.normal(0, 15), viewport=viewport)
    shown = render(library, start, width, height, nthreads=1)
    ys, xs = np.nonzero(shown.full_mask)
    if len(xs) < 50:
        return None
    pick = rng.choice(len(xs), min(400, len(xs)), replace=False)
    pix = np.column_stack([xs[pick], ys[pick]]).astype(np.float64)
    on_library = surface_points(library, start, pix, nthreads=1)
    on_photo = closest_surface(photographed, on_library)[0]
    uv = project_points(on_photo, truth)
    seen = surface_points(photographed, truth, uv, nthreads=1)
    inside = (uv[:, 0] > 3) & (uv[:, 0] < width - 4) & (uv[:, 1] > 3) & (uv[:, 1] < height - 4)
    ok = np.nonzero(inside & (np.linalg.norm(seen - on_photo, axis=1) < VISIBLE_TOL * radius))[0]
    if len(ok) < count:
        return None
    chosen = [int(rng.choice(ok))]  # spread out, as a person picks hubs, corners, feet
    for _ in range(count - 1):
        gap = np.min(np.linalg.norm(on_library[ok][:, None] - on_library[chosen][None], axis=2),
                     axis=1)
        chosen.append(int(ok[np.argmax(gap)]))
    clicks = uv[chosen] + rng.normal(0, noise_px * scale, (count, 2))
    clicks = np.clip(clicks, 0, [width - 1, height - 1])
    pins = [((pix[i, 0], pix[i, 1]), (c[0], c[1])) for i, c in zip(chosen, clicks)]
    return truth, start, pins


def naive_solve(mesh: CadMesh, start: Pose, pins, width: int, height: int) -> Pose:
    """The baseline: plain least squares on the six values from 12 azimuth starts (every 30
    deg from the pose shown); the lowest cost kept."""
    from scipy.optimize import least_squares

    model_px = np.array([p[0] for p in pins], dtype=np.float64)
    targets = np.array([p[1] for p in pins], dtype=np.float64)
    points = model_points(mesh, start, model_px)

    def residuals(x):
        pose = Pose(x[0], x[1], x[2], math.exp(x[3]), x[4], x[5], start.viewport)
        uv = project_points(points, pose)
        return np.nan_to_num(uv - targets, nan=1e4).reshape(-1)

    best, best_cost = None, math.inf
    lo = [-np.inf, -math.pi / 2, -np.inf, math.log(0.1), -width, -height]
    hi = [np.inf, math.pi / 2, np.inf, math.log(100), 2 * width, 2 * height]
    for k in range(12):
        x0 = np.array([start.azimuth + math.radians(30 * k), start.elevation, start.theta,
                       math.log(start.distance), start.px, start.py])
        found = least_squares(residuals, x0, bounds=(lo, hi))
        if found.cost < best_cost:
            best, best_cost = found.x, found.cost
    return Pose(best[0], best[1], best[2], math.exp(best[3]), best[4], best[5], start.viewport)


def pairs(use_real: bool, cad_root: Path = SHARED_CAD) -> list[tuple[str, CadMesh, CadMesh]]:
    """(category, library model, photographed model): each model of a category photographed,
    the next one of the category in the library (real meshes of ``cad_root``: categories with
    two or more models)."""
    lib = real_library(cad_root) if use_real else {}
    source = "real" if lib else "procedural"
    lib = lib or procedural_library()
    out = []
    for category, models in sorted(lib.items()):
        idx = sorted(models)
        for i, shot in enumerate(idx):
            out.append((f"{source}/{category}", models[idx[(i + 1) % len(idx)]], models[shot]))
    return out


def run(cases, solver) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rotation errors (deg), the same up to the photographed model's symmetry, seconds)."""
    errors, sym, seconds = [], [], []
    for category, library, photographed, truth, start, pins in cases:
        t0 = time.perf_counter()
        pose = solver(library, start, pins)
        seconds.append(time.perf_counter() - t0)
        errors.append(math.degrees(pose_rotation_error(pose, truth)))
        sym.append(math.degrees(symmetric_rotation_error(pose, truth,
                                                         mesh_symmetry(photographed))))
    return np.array(errors), np.array(sym), np.array(seconds)


def by_category(cases, errors: np.ndarray) -> dict[str, np.ndarray]:
    """{category: its cases' errors}, categories in name order."""
    out: dict[str, list[float]] = {}
    for case, e in zip(cases, errors):
        out.setdefault(case[0].split("/")[-1], []).append(e)
    return {name: np.array(v) for name, v in sorted(out.items())}


def ours(mesh: CadMesh, start: Pose, pins) -> Pose:
    return solve_pins(mesh.vertices, mesh.faces, start, pins, WIDTH, HEIGHT)


def no_slides(mesh: CadMesh, start: Pose, pins) -> Pose:
    """solve_pins with its points held exactly (no slides, no stretch): what they add."""
    from pose6d.fitting.pins import default_ranges, solve_points, split_pins

    model_px, photo_px = split_pins(pins, WIDTH, HEIGHT)
    return solve_points(model_points(mesh, start, model_px), photo_px, start,
                        default_ranges(WIDTH, HEIGHT), radius=mesh.radius)


def on_photo(width: int, height: int, own_pixels: bool = False):
    """A solver like ``ours`` on a photo ``width`` x ``height``; ``own_pixels``: without the
    model's radius, so a large object is solved in the photo's own pixels (pose6d.fitting.
    pin_solve.REFERENCE_RADIUS_PX: what shrinking them to a reference size adds)."""
    from pose6d.fitting.pins import default_ranges, normal_slides, solve_points, split_pins

    def solve(mesh: CadMesh, start: Pose, pins) -> Pose:
        if not own_pixels:
            return solve_pins(mesh.vertices, mesh.faces, start, pins, width, height)
        model_px, photo_px = split_pins(pins, width, height)
        points = model_points(mesh, start, model_px)
        return solve_points(points, photo_px, start, default_ranges(width, height),
                            slides=normal_slides(mesh, points))
    return solve


def elevation_set_then_solve(mesh: CadMesh, start: Pose, pins, found: Pose,
                             elevation: float) -> Pose:
    """What ``e=.. solve`` does after pinning (ml_backend.pins_step.adopt, then a solve):
    ``elevation`` (radians) set on the pose ``found`` and on the prior (the pose shown before
    the first pin), the pins solved again from there."""
    from pose6d.fitting.pins import default_ranges, normal_slides, solve_points, split_pins

    model_px, photo_px = split_pins(pins, WIDTH, HEIGHT)
    points = model_points(mesh, start, model_px)
    return solve_points(points, photo_px, found.replace(elevation=elevation),
                        default_ranges(WIDTH, HEIGHT), prior=start.replace(elevation=elevation),
                        slides=normal_slides(mesh, points), radius=mesh.radius)


def baseline(mesh: CadMesh, start: Pose, pins) -> Pose:
    return naive_solve(mesh, start, pins, WIDTH, HEIGHT)


def build(objects: int, seed: int, count: int, use_real: bool, models=None,
          cad_root: Path = SHARED_CAD, noise_px: float = NOISE_PX, elevation_off: float = 0.0,
          scale: float = 1.0):
    models = models or pairs(use_real, cad_root)
    cases, i = [], 0
    while len(cases) < objects and i < objects * 5:
        category, library, photographed = models[i % len(models)]
        rng = np.random.default_rng([seed, count, i])
        i += 1
        made = make_case(rng, library, photographed, count, noise_px, elevation_off, scale)
        if made is not None:
            cases.append((category, library, photographed) + made)
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=80, help="cases per pin count (default 80)")
    ap.add_argument("--timing", type=int, default=30, help="solves on the ~10k mesh (default 30)")
    ap.add_argument("--floor", type=int, default=40,
                    help="cases with 30 exact pins: the error the two shapes alone leave "
                         "(default 40; 0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generated", action="store_true",
                    help="use the procedural models even when ../shared is there")
    ap.add_argument("--cad-root", type=Path,
                    help="real meshes, <category>/<NN>.off (default: ../shared/imagenet3d_cad, "
                         "or $POSE6D_SHARED_CAD); categories with one model are left out")
    ap.add_argument("--quick", action="store_true", help="24 cases, 10 timing solves")
    args = ap.parse_args(argv)
    if args.quick:
        args.objects, args.timing, args.floor = 24, 10, 10
    if args.cad_root is None:
        args.cad_root = SHARED_CAD  # absent in a clone without ../shared: generated meshes
    elif not args.generated and not real_library(args.cad_root):
        ap.error(f"--cad-root {args.cad_root}: no category with two or more <NN>.off models")
    figures = {}
    for count in (6, 4):
        cases = build(args.objects, args.seed, count, not args.generated,
                      cad_root=args.cad_root)
        starts = [math.degrees(pose_rotation_error(c[4], c[3])) for c in cases]
        e_ours, s_ours, t_ours = run(cases, ours)
        e_rigid, s_rigid, t_rigid = run(cases, no_slides)
        e_base, s_base, t_base = run(cases, baseline)
        print(f"\n{count} pins, {len(cases)} objects ({cases[0][0].split('/')[0]} meshes, "
              f"another model of the category in the library), start median "
              f"{np.median(starts):.1f} deg")
        print(f"  {'solver':36s} {'median':>8s} {'<=30deg':>8s} {'sym med':>8s} {'sym<=30':>8s} "
              f"{'p50':>8s} {'p95':>8s}")
        for name, e, sy, t in (("solve_pins", e_ours, s_ours, t_ours),
                               ("solve_pins, points held, no stretch", e_rigid, s_rigid,
                                t_rigid),
                               ("naive LS, 12 azimuth restarts", e_base, s_base, t_base)):
            print(f"  {name:36s} {np.median(e):7.2f}d {np.mean(e <= 30):8.3f} "
                  f"{np.median(sy):7.2f}d {np.mean(sy <= 30):8.3f} "
                  f"{np.percentile(t, 50):7.3f}s {np.percentile(t, 95):7.3f}s")
        print("  solve_pins by category (median / within 30 deg): " + ", ".join(
            f"{name} {np.median(v):.1f}d/{np.mean(v <= 30):.2f}"
            for name, v in by_category(cases, e_ours).items()))
        figures[count] = (np.median(e_ours), np.mean(e_ours <= 30), np.median(e_base),
                          np.mean(e_base <= 30), np.percentile(t_ours, 95),
                          np.percentile(t_base, 95))
        print(f"figure: {count} pins median rotation error | {np.median(e_ours):.2f} deg | "
              f"naive LS, 12 restarts | {np.median(e_base):.2f} deg")
        print(f"figure: {count} pins within 30 deg | {np.mean(e_ours <= 30):.3f} | "
              f"naive LS, 12 restarts | {np.mean(e_base <= 30):.3f}")
        print(f"figure: {count} pins median rotation error up to symmetry | "
              f"{np.median(s_ours):.2f} deg | naive LS, 12 restarts | {np.median(s_base):.2f} deg")
    # A limit of the prior (the elevation and theta shown, 2 deg): starts also far off in
    # elevation, where another instance's pins disagree with each other
    far = build(args.objects, args.seed, 6, not args.generated, cad_root=args.cad_root,
                elevation_off=ELEVATION_OFF)
    found = [ours(c[1], c[4], c[5]) for c in far]
    e_far = np.array([math.degrees(pose_rotation_error(p, c[3])) for p, c in zip(found, far)])
    lifted = [p.as_degrees()["elevation"] - c[3].as_degrees()["elevation"]
              for p, c in zip(found, far)]
    print(f"\n6 pins, starts also {ELEVATION_OFF:g} deg off in elevation, {len(far)} objects: "
          f"median {np.median(e_far):.2f} deg, within 30 deg {np.mean(e_far <= 30):.3f}; the "
          f"elevation found minus the true one: median {np.median(np.abs(lifted)):.1f} deg (set "
          f"elevation roughly by command first: the prior holds to the elevation shown)")
    rng = np.random.default_rng([args.seed, 99])
    fixed = [elevation_set_then_solve(c[1], c[4], c[5], p, c[3].elevation
                                      + math.radians(rng.normal(0, SET_NOISE_DEG)))
             for p, c in zip(found, far)]
    e_fixed = np.array([math.degrees(pose_rotation_error(p, c[3])) for p, c in zip(fixed, far)])
    print(f"  then the annotator sets the elevation by command (the true one +- "
          f"{SET_NOISE_DEG:g} deg) and types solve: median {np.median(e_fixed):.2f} deg, within "
          f"30 deg {np.mean(e_fixed <= 30):.3f}")
    # Larger photos: the same objects and clicks, every pixel value 2x / 4x (a 1280 / 2560 px
    # wide photo shown to fit the screen: each click as far off on the screen)
    print("\nLarger photos (objects and click noise as many times larger in pixels), median "
          "rotation error:")
    for scale in LARGER_PHOTOS:
        w, h = round(WIDTH * scale), round(HEIGHT * scale)
        row = []
        for count in (6, 4):
            cases = build(args.objects, args.seed, count, not args.generated,
                          cad_root=args.cad_root, scale=scale)
            e_big, _, _ = run(cases, on_photo(w, h))
            e_own, _, _ = run(cases, on_photo(w, h, own_pixels=True))
            row.append(f"{count} pins {np.median(e_big):.2f} deg (in the photo's own pixels "
                       f"{np.median(e_own):.2f})")
        print(f"  {w}x{h}: " + "; ".join(row))
    # What the shapes alone allow: many exact clicks (no noise) on another instance
    floor = build(args.floor, args.seed, 30, not args.generated, cad_root=args.cad_root,
                  noise_px=0.0)
    if floor:
        e_floor, _, _ = run(floor, ours)
        e_held, _, _ = run(floor, no_slides)
        held = by_category(floor, e_held)
        print(f"\n30 exact pins (no click noise), {len(floor)} objects: median "
              f"{np.median(e_floor):.2f} deg (points held: {np.median(e_held):.2f}); by category "
              f"(held): " + ", ".join(f"{name} {np.median(v):.1f}d ({np.median(held[name]):.1f}d)"
                                      for name, v in by_category(floor, e_floor).items()))
    timing = timing_models(args.cad_root)
    t_cases = build(args.timing, args.seed + 1, 6, True, timing)
    _, _, t10 = run(t_cases, ours)
    _, _, b10 = run(t_cases, baseline)
    tris = len(timing[0][1].faces)
    print(f"\n~10k-triangle model ({timing[0][0]}, {tris} triangles), 6 pins, {len(t_cases)} "
          f"solves: p50 {np.percentile(t10, 50):.3f} s, p95 {np.percentile(t10, 95):.3f} s "
          f"(naive: p50 {np.percentile(b10, 50):.3f} s, p95 {np.percentile(b10, 95):.3f} s)")
    print(f"figure: pins solve p95, ~10k triangles | {np.percentile(t10, 95) * 1000:.0f} ms | "
          f"naive LS, 12 restarts | {np.percentile(b10, 95) * 1000:.0f} ms")
    goals = [("6 pins: median rotation error <= 6 deg", figures[6][0] <= 6.0,
              f"{figures[6][0]:.2f} deg"),
             ("6 pins: >= 95% within 30 deg", figures[6][1] >= 0.95, f"{figures[6][1]:.3f}"),
             ("4 pins: median rotation error <= 8 deg", figures[4][0] <= 8.0,
              f"{figures[4][0]:.2f} deg"),
             ("solve p95 <= 0.3 s at ~10k triangles", np.percentile(t10, 95) <= 0.3,
              f"{np.percentile(t10, 95):.3f} s"),
             ("better than the naive solver (6 pins median)", figures[6][0] < figures[6][2],
              f"{figures[6][0]:.2f} vs {figures[6][2]:.2f} deg"),
             ("faster than the naive solver (p95 at ~10k triangles)",
              np.percentile(t10, 95) < np.percentile(b10, 95),
              f"{np.percentile(t10, 95):.3f} vs {np.percentile(b10, 95):.3f} s")]
    print("\nGoals (issue 21):")
    for text, ok, value in goals:
        print(f"  [{'met' if ok else 'NOT met'}] {text}: {value}")
    return 0


def timing_models(cad_root: Path = SHARED_CAD) -> list[tuple[str, CadMesh, CadMesh]]:
    """The ~10k-triangle library model and a photographed one: real car 03 (library) and 04
    when ``cad_root`` has them, else the procedural tall mug and the straight mug."""
    real = real_library(cad_root).get("car", {})
    if 3 in real and 4 in real:
        return [("real/car 03", real[3], real[4])]
    mugs = procedural_library()["mug"]
    return [("procedural/mug 03", mugs[3], mugs[1])]


if __name__ == "__main__":
    sys.exit(main())
