import subprocess
import sys

import numpy as np
import pytest

from pose6d.cad_library import CadLibrary, CadMesh
from pose6d.camera import Pose
from pose6d.inout import read_image
from pose6d.overlay import compose_overlay, render_thumbnail
from pose6d.renderer import render
from conftest import REPO, box_mesh, some_meshes
from checks import iou
from reference_camera import reference_depth, reference_pixels, reference_silhouette

W, H = 640, 480


def random_visible_pose(rng, mesh) -> Pose:
    distance = rng.uniform(3.0, 8.0) * max(mesh.radius, 0.3)
    return Pose(rng.uniform(-np.pi, np.pi), rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.5),
                distance, rng.uniform(200, 440), rng.uniform(150, 330), viewport=600.0)


def test_silhouette_matches_reference_rasterisation(cad_root):
    """The README's claim: the ray-cast silhouette is the reference formula's, to the pixel."""
    rng = np.random.default_rng(5)
    lib = CadLibrary(cad_root)
    ious = []
    for category, index in some_meshes(cad_root):
        mesh = lib.mesh(category, index)
        pose = random_visible_pose(rng, mesh)
        mask = render(mesh, pose, W, H).full_mask
        ious.append(iou(mask, reference_silhouette(mesh.vertices, mesh.faces, pose, W, H)))
    assert len(ious) >= 8 and min(ious) >= 0.995, ious  # pixel-exact in practice (IoU 1.0 seen)


def test_visible_vertices_are_inside_the_silhouette(cad_root):
    rng = np.random.default_rng(6)
    lib = CadLibrary(cad_root)
    checked = 0
    for category, index in some_meshes(cad_root, per_category=1, limit=6):
        mesh = lib.mesh(category, index)
        pose = random_visible_pose(rng, mesh)
        r = render(mesh, pose, W, H)
        mask, depth = r.full_mask, r.full(r.depth, np.inf)
        uv = reference_pixels(mesh.vertices, pose)
        z = reference_depth(mesh.vertices, pose)
        cols, rows = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        ok = (cols >= 1) & (cols < W - 1) & (rows >= 1) & (rows < H - 1)
        for c, rr, zz in zip(cols[ok], rows[ok], z[ok]):
            near = depth[rr - 1:rr + 2, c - 1:c + 2]
            if np.isfinite(near).any() and zz <= near[np.isfinite(near)].min() + 1e-3 * zz:
                checked += 1  # a visible vertex: nothing in front of it
                assert mask[rr - 1:rr + 2, c - 1:c + 2].any()
    assert checked > 60


def test_half_pixel_convention_on_a_box():
    """A box face spanning formula x in [100, 200] covers pixel centres 100..200 exactly."""
    v, f = box_mesh(1.0, 1.0, 1.0)
    mesh = CadMesh("box", 1, "box", v, f)
    # azimuth 0, elevation 0: the camera looks along +y at the face y = -0.5.
    pose = Pose.from_degrees(0, 0, 0, 10.5, 150.0, 150.0, viewport=1000.0)
    uv = reference_pixels(v, pose)
    front = uv[v[:, 1] < 0]
    assert front[:, 0].min() == pytest.approx(100.0) and front[:, 0].max() == pytest.approx(200.0)
    mask = render(mesh, pose, 300, 300).full_mask
    cols = np.flatnonzero(mask[150])
    assert cols.min() == 100 and cols.max() == 200


def test_object_behind_or_outside_renders_empty():
    v, f = box_mesh(1.0, 1.0, 1.0)
    mesh = CadMesh("box", 1, "box", v, f)
    far_away = Pose.from_degrees(0, 0, 0, 10, 5000, 5000, viewport=1000)
    assert not render(mesh, far_away, 100, 100).full_mask.any()
    inside = Pose.from_degrees(0, 0, 0, 0.2, 50, 50, viewport=100)  # camera inside the box
    r = render(mesh, inside, 100, 100)
    assert r.full_mask.shape == (100, 100)


def test_overlay_only_changes_the_object_window():
    v, f = box_mesh(1.0, 1.0, 1.0)
    mesh = CadMesh("box", 1, "box", v, f)
    pose = Pose.from_degrees(30, 20, 10, 6, 100, 80, viewport=300)
    image = np.full((160, 200, 3), 77, dtype=np.uint8)
    r = render(mesh, pose, 200, 160)
    out = compose_overlay(image, r)
    changed = (out != image).any(axis=2)
    assert changed.any() and not (changed & ~r.full_mask).any()
    assert r.full_edges.sum() > 0 and not (r.full_edges & ~r.full_mask).any()


def test_thumbnail_frames_the_mesh(cad_root):
    lib = CadLibrary(cad_root)
    category, index = some_meshes(cad_root)[-1]
    thumb = render_thumbnail(lib.mesh(category, index), size=128)
    ink = (thumb < 250).any(axis=2)
    assert thumb.shape == (128, 128, 3) and ink.mean() > 0.05
    assert not ink[0].any() and not ink[-1].any() and not ink[:, 0].any() and not ink[:, -1].any()


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts/render_overlay.py"), *args],
                          capture_output=True, text=True)


def test_render_overlay_cli_mask_matches_reference(cad_root, tmp_path):
    category, index = some_meshes(cad_root)[0]
    cad = CadLibrary(cad_root).path(category, index)
    pose = dict(azimuth=40, elevation=15, theta=-5, distance=4, px=300, py=250)
    res = run_cli("--cad", str(cad), "--size", "640x480", *sum(
        ([f"--{k}", str(v)] for k, v in pose.items()), []), "--viewport", "800",
        "--out", str(tmp_path / "o.png"), "--mask", str(tmp_path / "m.png"))
    assert res.returncode == 0, res.stderr
    mask = read_image(tmp_path / "m.png")[..., 0]
    assert set(np.unique(mask)) <= {0, 255} and mask.shape == (480, 640)
    mesh = CadLibrary(cad_root).mesh(category, index)
    ref = reference_silhouette(mesh.vertices, mesh.faces, Pose.from_degrees(**pose, viewport=800),
                               640, 480)
    assert ref.sum() > 1000 and iou(mask == 255, ref) >= 0.98


@pytest.mark.parametrize("change, message", [
    ({"--azimuth": "nan"}, "finite"), ({"--distance": "0"}, "distance"),
    ({"--distance": "-2"}, "distance"), ({"--cad": "/no/such.off"}, "not found"),
    ({"--image": "/no/such.jpg"}, "image not found"), ({"--size": "12by3"}, "--size")])
def test_render_overlay_cli_bad_arguments(tmp_path, change, message):
    v, f = box_mesh(1, 1, 1)
    from pose6d.cad_library import write_off
    write_off(tmp_path / "box.off", v, f)
    args = {"--cad": str(tmp_path / "box.off"), "--size": "64x48", "--azimuth": "0",
            "--elevation": "0", "--theta": "0", "--distance": "5", "--px": "32", "--py": "24",
            "--out": str(tmp_path / "o.png")}
    if "--image" in change:
        del args["--size"]
    args.update(change)
    res = run_cli(*sum(([k, v] for k, v in args.items()), []))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (tmp_path / "o.png").exists()
