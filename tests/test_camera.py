import math

import numpy as np
import pytest

from pose6d.cad_library import CadLibrary
from pose6d.camera import (InvalidPoseError, Pose, opencv_camera, opencv_extrinsics,
                           project_points, wrap_angle)
from pose6d.pose_error import (pose_rotation_error, rotation_error, summarize_errors,
                               symmetric_rotation_error)
from conftest import some_meshes
from reference_camera import project_reference


def random_pose(rng, viewport=3000.0) -> Pose:
    return Pose(rng.uniform(-np.pi, np.pi), rng.uniform(-1.2, 1.2), rng.uniform(-np.pi, np.pi),
                rng.uniform(2.0, 30.0), rng.uniform(0, 800), rng.uniform(0, 640), viewport)


def test_projection_matches_the_reference_formula_on_meshes(cad_root):
    rng = np.random.default_rng(1)
    lib = CadLibrary(cad_root)
    worst = 0.0
    for category, index in some_meshes(cad_root, per_category=100, limit=100):
        vertices = lib.mesh(category, index).vertices
        for _ in range(5):
            pose = random_pose(rng, viewport=rng.choice([2000.0, 3000.0]))
            ref = project_reference(vertices, pose.azimuth, pose.elevation, pose.theta,
                                    pose.distance, pose.px, pose.py, pose.viewport)
            worst = max(worst, float(np.abs(project_points(vertices, pose) - ref).max()))
    assert worst < 1e-6, worst


def test_projection_matches_formula_on_random_points():
    rng = np.random.default_rng(2)
    for _ in range(200):
        pose = random_pose(rng)
        pts = rng.uniform(-1, 1, size=(50, 3))
        ref = project_reference(pts, pose.azimuth, pose.elevation, pose.theta, pose.distance,
                                pose.px, pose.py, pose.viewport)
        np.testing.assert_allclose(project_points(pts, pose), ref, atol=1e-6, rtol=0)


def test_opencv_camera_is_a_proper_camera():
    rng = np.random.default_rng(3)
    for _ in range(50):
        pose = random_pose(rng)
        k, r, t = opencv_camera(pose)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        # The world origin (object centre) projects to (px, py) and lies `distance` ahead.
        assert t[2] == pytest.approx(pose.distance)
        uv = project_points(np.zeros((1, 3)), pose)[0]
        np.testing.assert_allclose(uv, [pose.px, pose.py], atol=1e-9)


def test_many_poses_at_once_match_the_reference_formula():
    """opencv_extrinsics on arrays (the pin solver evaluates all its starts in one call): each
    pose's R, t project like the reference formula, and equal the one-pose call."""
    rng = np.random.default_rng(4)
    poses = [random_pose(rng) for _ in range(40)]
    values = np.array([[p.azimuth, p.elevation, p.theta, p.distance] for p in poses])
    r_all, t_all = opencv_extrinsics(*values.T)
    assert r_all.shape == (40, 3, 3) and t_all.shape == (40, 3)
    pts = rng.uniform(-1, 1, size=(30, 3))
    for pose, r, t in zip(poses, r_all, t_all):
        cam = pts @ r.T + t
        uv = pose.viewport * cam[:, :2] / cam[:, 2:] + [pose.px, pose.py]
        ref = project_reference(pts, pose.azimuth, pose.elevation, pose.theta, pose.distance,
                                pose.px, pose.py, pose.viewport)
        np.testing.assert_allclose(uv, ref, atol=1e-6, rtol=0)
        one_r, one_t = opencv_extrinsics(pose.azimuth, pose.elevation, pose.theta, pose.distance)
        np.testing.assert_allclose(r, one_r, atol=1e-14, rtol=0)
        np.testing.assert_allclose(t, one_t, atol=1e-12, rtol=0)


def test_wrap_angle_of_numbers_and_arrays():
    """(-pi, pi] (or (-180, 180]), a whole number of turns away from the angle given."""
    rng = np.random.default_rng(5)
    angles = np.r_[rng.uniform(-20, 20, 200), [math.pi, -math.pi, 3 * math.pi, 0.0]]
    for half_turn in (math.pi, 180.0):
        values = angles * half_turn / math.pi
        wrapped = wrap_angle(values, half_turn)
        assert wrapped.shape == values.shape
        assert ((wrapped > -half_turn) & (wrapped <= half_turn)).all()
        turns = (values - wrapped) / (2 * half_turn)
        np.testing.assert_allclose(turns, np.round(turns), atol=1e-9)
        assert [wrap_angle(float(v), half_turn) for v in values] == list(wrapped)


def test_points_behind_camera_are_nan():
    pose = Pose.from_degrees(0, 0, 0, 2, 100, 100)
    behind = np.array([[0.0, -5.0, 0.0]])  # the camera sits at (0, -2, 0) looking at +y
    assert np.isnan(project_points(behind, pose)).all()


@pytest.mark.parametrize("bad", [dict(distance=0), dict(distance=-1), dict(azimuth=math.nan),
                                 dict(px=math.inf), dict(viewport=0), dict(theta="abc")])
def test_invalid_pose_rejected(bad):
    values = dict(azimuth=0.1, elevation=0.2, theta=0.0, distance=5, px=10, py=10)
    values.update(bad)
    with pytest.raises(InvalidPoseError):
        Pose(**values)


def test_degrees_round_trip():
    pose = Pose.from_degrees(30, -10, 5, 4, 1, 2, viewport=2000)
    deg = pose.as_degrees()
    assert deg["azimuth"] == pytest.approx(30) and deg["elevation"] == pytest.approx(-10)
    assert pose.azimuth == pytest.approx(math.radians(30))


def test_rotation_error_matches_logm_definition():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(4)
    for _ in range(50):
        p1, p2 = random_pose(rng), random_pose(rng)
        from pose6d.camera import object_rotation

        r1, r2 = object_rotation(p1), object_rotation(p2)
        expected = np.linalg.norm(np.real(scipy_linalg.logm(r1.T @ r2)), "fro") / math.sqrt(2)
        assert rotation_error(r1, r2) == pytest.approx(expected, abs=1e-6)


def test_rotation_error_simple_cases():
    a = Pose.from_degrees(10, 20, 0, 5, 0, 0)
    assert pose_rotation_error(a, a) == pytest.approx(0, abs=1e-7)
    b = Pose.from_degrees(40, 20, 0, 9, 50, 50)  # distance/centre do not matter
    assert math.degrees(pose_rotation_error(a, b)) == pytest.approx(30, abs=1e-6)
    c = Pose.from_degrees(10, 20, 25, 5, 0, 0)
    assert math.degrees(pose_rotation_error(a, c)) == pytest.approx(25, abs=1e-6)


def test_symmetric_rotation_error_is_the_smallest_over_the_azimuths_that_look_alike():
    """Reference: the plain error minimised by brute force over azimuth turns (every 0.05 deg
    all round for a rotational object, {0, 180} for a half-turn one)."""
    rng = np.random.default_rng(7)
    turns = np.radians(np.arange(0.0, 360.0, 0.05))
    for _ in range(20):
        p1, p2 = random_pose(rng), random_pose(rng)
        brute = min(pose_rotation_error(p1.replace(azimuth=p1.azimuth + d), p2) for d in turns)
        assert math.degrees(symmetric_rotation_error(p1, p2, "rotational")) == pytest.approx(
            math.degrees(brute), abs=0.05)
        half = min(pose_rotation_error(p1, p2),
                   pose_rotation_error(p1.replace(azimuth=p1.azimuth + math.pi), p2))
        assert symmetric_rotation_error(p1, p2, "half_turn") == pytest.approx(half, abs=1e-9)
        assert symmetric_rotation_error(p1, p2) == pose_rotation_error(p1, p2)
    a = Pose.from_degrees(10, 20, 5, 5, 0, 0)
    assert math.degrees(symmetric_rotation_error(a, a.replace(azimuth=a.azimuth + 2.0),
                                                 "rotational")) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="symmetry must be one of"):
        symmetric_rotation_error(a, a, "mirror")


def test_summary_metrics():
    errs = [math.radians(d) for d in (1, 5, 12, 29, 31, 170)]
    s = summarize_errors(errs)
    assert s["count"] == 6
    assert s["acc_pi18"] == pytest.approx(2 / 6)
    assert s["acc_pi6"] == pytest.approx(4 / 6)
    assert s["median_deg"] == pytest.approx((12 + 29) / 2)
    assert math.isnan(summarize_errors([])["median_deg"])
