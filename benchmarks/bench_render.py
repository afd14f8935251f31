#!/usr/bin/env python3
"""Overlay render time at 640x480: ours (Open3D ray casting, hidden surfaces removed) against the
original tool's method measured in the same run (project every vertex, draw every triangle edge
as a 1-px line, blend 0.75/0.25 over the photo in float64).

Prints one row per mesh: triangles, median and p90 ms for both, and the speed-up ratio.
Uses ../shared/imagenet3d_cad when present, else procedurally made meshes.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from pose6d.cad_library import CadLibrary, CadMesh  # noqa: E402
from pose6d.camera import Pose, project_points  # noqa: E402
from pose6d.overlay import render_overlay  # noqa: E402

W, H = 640, 480


def original_tool_overlay(image: np.ndarray, mesh: CadMesh, pose: Pose) -> np.ndarray:
    """The original Flask tool's renderer: every triangle edge as a 1-px line, then a blend."""
    from PIL import Image, ImageDraw

    uv = project_points(mesh.vertices, pose)
    canvas = Image.new("RGB", (image.shape[1], image.shape[0]), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for a, b, c in mesh.faces:
        pa, pb, pc = (tuple(uv[i]) for i in (a, b, c))
        draw.line([pa, pb], fill=(0, 255, 0))
        draw.line([pb, pc], fill=(0, 255, 0))
        draw.line([pc, pa], fill=(0, 255, 0))
    lines = np.asarray(canvas, dtype=np.float64)
    drawn = lines.any(axis=2, keepdims=True)
    return np.where(drawn, 0.75 * image + 0.25 * lines, image).astype(np.uint8)


def sphere_mesh(subdivisions: int) -> CadMesh:
    """An icosphere (20 * 4^s triangles) for machines without the shared meshes."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_icosahedron(0.5)
    m = m.subdivide_loop(number_of_iterations=subdivisions)
    return CadMesh("sphere", subdivisions, Path("icosphere"), np.asarray(m.vertices),
                   np.asarray(m.triangles, dtype=np.int32))


def pick_meshes() -> list[tuple[str, CadMesh]]:
    shared = REPO.parent / "shared" / "imagenet3d_cad"
    if shared.is_dir():
        lib = CadLibrary(shared)
        return [("chair/04 (real, small)", lib.mesh("chair", 4)),
                ("guitar/04 (real)", lib.mesh("guitar", 4)),
                ("car/03 (real, large)", lib.mesh("car", 3))]
    return [("icosphere s2", sphere_mesh(2)), ("icosphere s4", sphere_mesh(4))]


def time_ms(fn, repeats: int) -> list[float]:
    fn()  # warm-up: builds the BVH once, as the backend's cache does
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="ray-casting threads (default 1: one core)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    photo = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    print(f"overlay render at {W}x{H}, {args.repeats} repeats, ray-cast threads={args.threads}")
    print(f"{'mesh':26s} {'tris':>6s} {'ours p50':>9s} {'ours p90':>9s} {'orig p50':>9s} "
          f"{'orig p90':>9s} {'speed-up':>8s}")
    for name, mesh in pick_meshes():
        # Object about 70% of the image height, seen from a typical viewpoint.
        pose = Pose.from_degrees(35, 15, 5, mesh.radius * 3000 / (0.35 * H), W / 2, H / 2, 3000)
        ours = time_ms(lambda: render_overlay(photo, mesh, pose, nthreads=args.threads), args.repeats)
        orig = time_ms(lambda: original_tool_overlay(photo, mesh, pose), max(5, args.repeats // 3))
        o50, g50 = statistics.median(ours), statistics.median(orig)
        print(f"{name:26s} {len(mesh.faces):6d} {o50:8.1f}ms {np.percentile(ours, 90):8.1f}ms "
              f"{g50:8.1f}ms {np.percentile(orig, 90):8.1f}ms {g50 / o50:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
