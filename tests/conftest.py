"""Shared fixtures: the real CAD meshes from ../shared (skipped when absent) and a tiny dataset."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from pose6d.cad_library import write_off
from pose6d.camera import Pose
from pose6d.dataset import Dataset, ObjectKey, ObjectRecord, write_record
from pose6d.inout import write_image

# One real Label Studio and one PostgreSQL per test session, shared by every module that asks.
from label_studio_server import label_studio, label_studio_client, label_studio_root  # noqa: F401
from postgres_server import postgres_server, postgres_url  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

SHARED_CAD = Path(os.environ.get("POSE6D_SHARED_CAD", REPO.parent / "shared" / "imagenet3d_cad"))


SHARED_MISSING = (f"the real ImageNet3D meshes are not here ({SHARED_CAD}): they are kept beside "
                  "the repository, never in it; the same checks ran on the generated meshes")


@pytest.fixture(scope="session")
def shared_cad_root() -> Path:
    """../shared/imagenet3d_cad (real ImageNet3D meshes); the test is skipped when it is absent."""
    if not SHARED_CAD.is_dir():
        pytest.skip(SHARED_MISSING)
    return SHARED_CAD


@pytest.fixture(scope="session")
def generated_cad_root(tmp_path_factory) -> Path:
    """The project's own procedural meshes (the demo dataset's CAD/), for any clone."""
    from pose6d.demo.dataset import write_demo_cad

    root = tmp_path_factory.mktemp("generated_cad")
    write_demo_cad(root)
    return root


@pytest.fixture(params=["generated", "imagenet3d"])
def cad_root(request, generated_cad_root) -> Path:
    """Checks behind README claims run on both: the generated meshes always, the real ones
    when ../shared is there."""
    if request.param == "generated":
        return generated_cad_root
    if not SHARED_CAD.is_dir():
        pytest.skip(SHARED_MISSING)
    return SHARED_CAD


def some_meshes(root: Path, per_category: int = 2, limit: int = 10) -> list[tuple[str, int]]:
    """(category, index) of up to ``per_category`` meshes of each category, at most ``limit``."""
    from pose6d.cad_library import CadLibrary

    lib = CadLibrary(root)
    return [(c, i) for c in lib.categories() for i in lib.indices(c)[:per_category]][:limit]


def box_mesh(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box centred at the origin: vertices (8, 3), faces (12, 3)."""
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)]) / 2.0
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def make_tiny_dataset(root: Path) -> Dataset:
    """Two categories (one with an underscore), CAD indices with a gap, three objects, 320x240."""
    write_off(root / "CAD/car/01.off", *box_mesh(1.0, 0.5, 0.4))
    write_off(root / "CAD/car/03.off", *box_mesh(0.8, 0.6, 0.5))
    write_off(root / "CAD/punching_bag/01.off", *box_mesh(0.3, 0.3, 1.0))
    rng = np.random.default_rng(0)
    objects = [("car", "img_a_1", 0, 1), ("car", "img_a_1", 1, 3), ("punching_bag", "bag_2", 0, 1)]
    for cat, name, k, cad in objects:
        image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
        write_image(root / "images" / cat / f"{name}.JPEG", image)
        pose = Pose.from_degrees(30 + 10 * k, 15, 0, 8, 160 + 20 * k, 120, viewport=500)
        record = ObjectRecord(pose, cad, {"bbox": np.array([100.0, 80, 220, 160]),
                                          "width": 320, "height": 240})
        write_record(root / "annotations" / cat / f"{name}_{k}.npz", record)
    return Dataset(root)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Dataset:
    return make_tiny_dataset(tmp_path / "data")


@pytest.fixture
def tiny_keys() -> list[ObjectKey]:
    return [ObjectKey("car", "img_a_1", 0), ObjectKey("car", "img_a_1", 1),
            ObjectKey("punching_bag", "bag_2", 0)]


def pytest_terminal_summary(terminalreporter):
    """What tests/test_container.py saw (the image build, /health, the synced record's owner),
    shown without -s too."""
    report = getattr(sys.modules.get("container"), "REPORT", None)
    if report:
        terminalreporter.section("container")
        for line in report:
            terminalreporter.write_line(line)
