"""Exports (ImageNet3D per-image npz, BOP, flat table) from the synced folder and from a REAL
Label Studio project; the project export must match the synced one."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ls_payloads as P
from ls_admin.export_bop import export_bop
from ls_admin.export_imagenet3d import export_imagenet3d
from ls_admin.export_source import (ExportError, Label, labels_from_synced, labels_from_tasks,
                                    newest_per_object)
from ls_admin.export_table import COLUMNS, export_table
from label_sync.engine import SyncService
from pose6d.camera import Pose
from pose6d.dataset import Dataset, ObjectKey, read_image_annotations
from reference_camera import reference_pixels

REPO = Path(__file__).resolve().parents[1]
CAR0, CAR1, BAG = "car/img_a_1_0", "car/img_a_1_1", "punching_bag/bag_2_0"
# Submitted values (degrees, as Label Studio stores them). CAR0 twice: annotator 9 is newer.
FIRST = dict(azimuth=30.52, elevation=15.25, theta=-3.5, distance=7.125, px=161.5, py=118.0)
NEWEST = dict(azimuth=-145.25, elevation=22.75, theta=4.25, distance=9.875, px=170.5, py=110.5)


@pytest.fixture
def synced(tiny_dataset) -> Dataset:
    """Events through the real sync: CAR0 by 7 then by 9 (cad 3), CAR1 "bad quality - no
    object" by 7, BAG skipped by 8."""
    service = SyncService(tiny_dataset)
    try:
        service.handle_event(P.created(11, 1, CAR0, 10, P.pose_result(**FIRST), user=7))
        service.handle_event(P.created(12, 1, CAR0, 20, P.pose_result(**NEWEST, cad="3"), user=9))
        service.handle_event(P.created(13, 2, CAR1, 15, P.pose_result(
            quality="bad quality - no object", dense="yes"), user=7))
        service.handle_event(P.created(14, 3, BAG, 12, [], user=8, was_cancelled=True))
    finally:
        service.close()
    return tiny_dataset


def by_key(objects: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for obj in objects:
        out.setdefault(obj["object_key"], []).append(obj)
    return out


def test_imagenet3d_export_gives_the_submitted_pose_back(synced, tmp_path):
    labels = labels_from_synced(synced)
    summary = export_imagenet3d(labels, tmp_path / "in3d", progress=False)
    assert (summary.files, summary.objects, summary.skipped, summary.bad) == (2, 3, 1, 1)
    objs = by_key(read_image_annotations(tmp_path / "in3d/car/img_a_1.npz"))
    assert list(objs) == [CAR0, CAR1]  # sorted by the object's index k
    (car0,) = objs[CAR0]
    for name in ("azimuth", "elevation", "theta"):  # radians in the file, exactly the sync's
        assert car0[name] == math.radians(NEWEST[name])
        assert math.degrees(car0[name]) == pytest.approx(NEWEST[name], abs=1e-12)
    for name in ("distance", "px", "py"):
        assert car0[name] == NEWEST[name]
    assert list(car0["principal"]) == [NEWEST["px"], NEWEST["py"]]
    assert (car0["focal"], car0["viewport"], car0["cad_index"]) == (1.0, 500.0, 3)
    assert list(car0["bbox"]) == [100.0, 80.0, 220.0, 160.0]
    assert (car0["width"], car0["height"], car0["class"]) == (320, 240, "car")
    assert (car0["object_status"], car0["dense"], car0["skipped"]) == ("status_good", "dense_no", False)
    assert (car0["annotator"], car0["ls_annotation_id"]) == ("9", 12)
    (car1,) = objs[CAR1]
    assert (car1["object_status"], car1["dense"], car1["skipped"]) == ("status_bad", "dense_yes", False)
    # The skipped object: kept, initial pose, marked (README says so).
    (bag,) = read_image_annotations(tmp_path / "in3d/punching_bag/bag_2.npz")
    initial = synced.read(ObjectKey.parse(BAG)).pose
    assert (bag["skipped"], bag["object_status"], bag["annotator"]) == (True, "status_bad", "8")
    assert [bag[n] for n in ("azimuth", "distance", "px")] == [initial.azimuth, initial.distance,
                                                               initial.px]
    assert "SKIPPED" in (tmp_path / "in3d/README.txt").read_text()


def test_all_annotations_from_the_sync_store(synced, tmp_path):
    labels = labels_from_synced(synced, all_annotations=True)
    assert [(str(l.key), l.annotator, l.skipped) for l in labels] == [
        (CAR0, "7", False), (CAR0, "9", False), (CAR1, "7", False), (BAG, "8", True)]
    export_imagenet3d(labels, tmp_path / "all", progress=False)
    objs = by_key(read_image_annotations(tmp_path / "all/car/img_a_1.npz"))
    assert [o["azimuth"] for o in objs[CAR0]] == [math.radians(FIRST["azimuth"]),
                                                   math.radians(NEWEST["azimuth"])]
    assert [str(l.key) for l in newest_per_object(labels)] == [CAR0, CAR1, BAG]
    assert newest_per_object(labels)[0].annotator == "9"


def test_all_annotations_without_store_is_a_clear_error(tiny_dataset):
    record = tiny_dataset.read(ObjectKey.parse(CAR0))
    tiny_dataset.write(ObjectKey.parse(CAR0), record)
    assert [str(l.key) for l in labels_from_synced(tiny_dataset)] == [CAR0]
    with pytest.raises(ExportError, match="sync store"):
        labels_from_synced(tiny_dataset, all_annotations=True)


def test_newest_prefers_a_completed_label_over_a_newer_skip(tiny_dataset):
    key = ObjectKey.parse(CAR0)
    rec = tiny_dataset.read(key)
    done = Label(key, rec, "7", False, annotation_id=1, updated_us=10)
    skip = Label(key, rec, "8", True, annotation_id=2, updated_us=20)
    newer = Label(key, rec, "9", False, annotation_id=3, updated_us=30)
    assert newest_per_object([done, skip]) == [done]
    assert newest_per_object([skip, newer, done]) == [newer]


def read_ply_mm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles)


def test_bop_pose_projects_the_cad_exactly(synced, tmp_path):
    out = tmp_path / "bop"
    summary = export_bop(labels_from_synced(synced), synced, out, mm_per_unit=1000.0,
                         progress=False)
    assert (summary.objects, summary.left_out) == (1, 2)  # bad and skipped are left out
    assert {e["reason"] for e in json.loads((out / "left_out.json").read_text())} == {
        "status_bad", "skipped"}
    ids = {(e["category"], e["cad_index"]): e for e in json.loads((out / "obj_id_map.json").read_text())}
    assert sorted(ids) == [("car", 1), ("car", 3), ("punching_bag", 1)]
    scenes = {s["category"]: s["scene_id"] for s in json.loads((out / "scenes.json").read_text())}
    folder = out / "train" / f"{scenes['car']:06d}"
    gt = json.loads((folder / "scene_gt.json").read_text())["1"][0]
    cam = json.loads((folder / "scene_camera.json").read_text())["1"]
    assert json.loads((folder / "image_map.json").read_text())["1"]["object_key"] == CAR0
    assert gt["obj_id"] == ids[("car", 3)]["obj_id"]
    vertices_mm, faces = read_ply_mm(out / ids[("car", 3)]["model"])
    mesh = synced.cad.mesh("car", 3)
    np.testing.assert_allclose(vertices_mm / 1000.0, mesh.vertices, rtol=0, atol=1e-12)
    assert (faces == mesh.faces).all()
    k, r = np.array(cam["cam_K"]).reshape(3, 3), np.array(gt["cam_R_m2c"]).reshape(3, 3)
    t = np.array(gt["cam_t_m2c"])
    x = (vertices_mm @ r.T + t) @ k.T
    uv_bop = x[:, :2] / x[:, 2:]
    pose = Pose.from_degrees(**NEWEST, viewport=500.0)
    np.testing.assert_allclose(uv_bop, reference_pixels(vertices_mm / 1000.0, pose), rtol=0, atol=1e-6)
    info = json.loads((out / "models/models_info.json").read_text())[str(gt["obj_id"])]
    assert info["diameter"] == pytest.approx(1000.0 * math.sqrt(0.8 ** 2 + 0.6 ** 2 + 0.5 ** 2))
    assert (info["min_x"], info["size_z"]) == pytest.approx((-400.0, 500.0))
    assert (folder / "rgb/000001.jpg").resolve() == (synced.root / "images/car/img_a_1.JPEG").resolve()


def test_bop_on_real_imagenet3d_meshes(shared_cad_root, tmp_path):
    """Real CAD: every model survives PLY in mm to 1e-9 units and projects to 1e-6 px."""
    from ls_admin.export_bop import bop_pose, ply_bytes
    from pose6d.cad_library import CadLibrary

    cad = CadLibrary(shared_cad_root)
    category = cad.categories()[0]
    mesh = cad.mesh(category, cad.indices(category)[0])
    (tmp_path / "m.ply").write_bytes(ply_bytes(mesh.vertices * 1000.0, mesh.faces))
    vertices_mm, _ = read_ply_mm(tmp_path / "m.ply")
    pose = Pose.from_degrees(-120.3, 35.2, 12.9, 4.7, 301.5, 211.25, viewport=2000.0)
    k, r, t = bop_pose(pose)
    x = (vertices_mm @ r.T + t) @ k.T
    np.testing.assert_allclose(x[:, :2] / x[:, 2:], reference_pixels(mesh.vertices, pose), atol=1e-6)


def test_table_columns_and_rows(synced, tmp_path):
    export_table(labels_from_synced(synced), tmp_path / "t", progress=False)
    with open(tmp_path / "t/labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    jsonl = [json.loads(line) for line in (tmp_path / "t/labels.jsonl").read_text().splitlines()]
    assert [r["object_key"] for r in rows] == [r["object_key"] for r in jsonl] == [CAR0, CAR1, BAG]
    car0, car1, bag = jsonl
    assert car0["azimuth_deg"] == pytest.approx(NEWEST["azimuth"], abs=1e-12)
    assert car0["azimuth_rad"] == math.radians(NEWEST["azimuth"])
    assert float(rows[0]["azimuth_rad"]) == math.radians(NEWEST["azimuth"])  # repr precision
    assert (car0["quality"], car0["object_status"], car0["dense"], car0["dense_code"]) == (
        "good", "status_good", "no", "dense_no")
    assert (car0["cad_index"], car0["annotator"], car0["ls_annotation_id"], car0["ls_task_id"],
            car0["ls_project_id"]) == (3, "9", 12, 1, 1)
    assert car0["updated_at"].startswith("2025-03-01T12:00:20")
    assert (car1["quality"], car1["object_status"], car1["skipped"]) == (
        "bad quality - no object", "status_bad", 0)
    assert (bag["quality"], bag["skipped"], bag["annotator"]) == ("skipped", 1, "8")
    export_table(labels_from_synced(synced, True), tmp_path / "all", progress=False)
    assert len((tmp_path / "all/labels.jsonl").read_text().splitlines()) == 4


def test_cli_writes_and_refuses_a_non_empty_folder(synced, tmp_path):
    cmd = [sys.executable, str(REPO / "scripts/export.py"), "--format", "table", "--quiet",
           "--data-root", str(synced.root), "--out", str(tmp_path / "t")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "exported 3 labels (1 skipped, 1 bad)" in run.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert subprocess.run(cmd + ["--overwrite"], capture_output=True, timeout=120).returncode == 0


# --- A real Label Studio project. ---


def _npz_tree(root: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(root.rglob("*.npz")):
        objs = read_image_annotations(path)
        out[path.relative_to(root).as_posix()] = [
            {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in o.items()} for o in objs]
    return out


@pytest.mark.live
def test_project_export_matches_the_synced_export(label_studio, tiny_dataset, tmp_path):
    from pose6d.tasks import iter_tasks

    client = label_studio.client()
    project = client.projects.create(title="pose6d export",
                                     label_config=(REPO / "labeling_config/pose6d.xml").read_text())
    client.projects.import_tasks(id=project.id, request=list(iter_tasks(tiny_dataset)))
    tasks = {t.data["object_key"]: t.id for t in client.tasks.list(project=project.id)}
    other = client.users.create(username="annotator2", email="annotator2@example.com",
                                password="x-Secret-123")
    client.annotations.create(id=tasks[CAR0], result=P.pose_result(**FIRST), was_cancelled=False)
    client.annotations.create(id=tasks[CAR0], result=P.pose_result(**NEWEST, cad="3"),
                              was_cancelled=False, completed_by=other.id)
    client.annotations.create(id=tasks[CAR1], was_cancelled=False, result=P.pose_result(
        quality="bad quality - no object", dense="yes"))
    client.annotations.create(id=tasks[BAG], result=[], was_cancelled=True)

    from ls_admin.export_source import labels_from_project

    # the same annotations through the webhook sync, read from the paged listing (the
    # export reads snapshots)
    exported = [t.model_dump(mode="json")
                for t in client.tasks.list(project=project.id, fields="all")]
    service = SyncService(tiny_dataset)
    try:
        for task in exported:
            for ann in task["annotations"]:
                service.handle_event({"action": "ANNOTATION_CREATED", "annotation": ann,
                                      "task": task, "project": {"id": project.id}})
    finally:
        service.close()
    for all_annotations in (False, True):
        from_project = labels_from_project(client, project.id, tiny_dataset, all_annotations)
        from_synced = labels_from_synced(tiny_dataset, all_annotations)
        assert len(from_project) == (4 if all_annotations else 3)
        sub = "all" if all_annotations else "newest"
        export_imagenet3d(from_project, tmp_path / sub / "project", progress=False)
        export_imagenet3d(from_synced, tmp_path / sub / "synced", progress=False)
        assert _npz_tree(tmp_path / sub / "project") == _npz_tree(tmp_path / sub / "synced")
    newest = {str(l.key): l for l in labels_from_project(client, project.id, tiny_dataset)}
    assert newest[CAR0].annotator == str(other.id) and newest[CAR0].record.cad_index == 3
    assert newest[CAR0].record.pose.azimuth == math.radians(NEWEST["azimuth"])
    assert newest[BAG].skipped and newest[CAR1].object_status == "status_bad"
    env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    run = subprocess.run([sys.executable, str(REPO / "scripts/export.py"), "--format", "imagenet3d",
                          "--quiet", "--data-root", str(tiny_dataset.root), "--from", "project",
                          "--project-id", str(project.id), "--out", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert _npz_tree(tmp_path / "cli") == _npz_tree(tmp_path / "newest" / "project")
    report = subprocess.run([sys.executable, str(REPO / "scripts/report.py"), "--data-root",
                             str(tiny_dataset.root), "--project-id", str(project.id),
                             "--out", str(tmp_path / "report.html")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert report.returncode == 0, report.stderr
    assert "progress: 2 / 3 objects done (66.7%), 1 skipped, 1 bad" in report.stdout
    assert "admin@example.com / annotator2@example.com" in report.stdout  # agreement on CAR0


def test_labels_from_tasks_reports_what_the_sync_would_reject(tiny_dataset):
    bad_pose = P.pose_result(distance=-1.0)
    task = P.task(5, CAR0)
    task["annotations"] = [P.annotation(21, 5, bad_pose, 30)]
    rejected: list[str] = []
    assert labels_from_tasks([task], tiny_dataset, on_reject=rejected.append) == []
    assert len(rejected) == 1 and "task 5 annotation 21" in rejected[0] and "distance" in rejected[0]


@pytest.mark.parametrize("out", [".", "..", "images", "images/car", "CAD", "CAD/car/new",
                                 "annotations", "annotations_new", "ground_truth",
                                 "ground_truth/x"])
def test_cli_refuses_the_dataset_and_its_folders_as_out(synced, out):
    root = synced.root
    (root / "ground_truth").mkdir(exist_ok=True)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    run = subprocess.run([sys.executable, str(REPO / "scripts/export.py"), "--format", "table",
                          "--quiet", "--data-root", str(root), "--out", str(root / out),
                          "--overwrite"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: --out "), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_cli_allows_an_export_folder_inside_the_data_root(synced):
    out = synced.root / "exports" / "x"
    cmd = [sys.executable, str(REPO / "scripts/export.py"), "--format", "table", "--quiet",
           "--data-root", str(synced.root), "--out", str(out), "--overwrite"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (out / "labels.csv").is_file()
