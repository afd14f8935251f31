"""Label Studio's ML backend contract, through Flask's test client."""
import math

import pytest

from pose6d import labeling
from pose6d.camera import Pose
from checks import decode_brush, edges_agree_with_silhouette
from reference_camera import reference_silhouette
from backend_helpers import make_client, numbers_of, results_by_name, task_for


def test_health_and_setup(tiny_dataset):
    client = make_client(tiny_dataset)
    res = client.get("/health")
    assert res.status_code == 200 and res.json["status"] == "UP"
    from conftest import REPO
    schema = (REPO / "labeling_config/pose6d.xml").read_text()
    res = client.post("/setup", json={"project": "1.1", "schema": schema, "hostname": "http://x",
                                      "access_token": "secret"})
    assert res.status_code == 200 and "model_version" in res.json
    res = client.post("/setup", json={"project": "1.1", "schema": "<View><Image name='image' value='$image'/></View>"})
    assert res.status_code == 400 and "azimuth" in res.json["error"]


def test_predict_prefills_initial_pose_with_overlay(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    tasks = [task_for(tiny_dataset, key, i + 1) for i, key in enumerate(tiny_keys)]
    res = client.post("/predict", json={"tasks": tasks, "project": "1.1", "label_config": "",
                                        "params": {"context": None}})
    assert res.status_code == 200
    results = res.json["results"]
    assert len(results) == len(tasks)
    for key, pred in zip(tiny_keys, results):
        record = tiny_dataset.read(key)
        shown = numbers_of(pred["result"])
        expected = record.pose.as_degrees()
        for name in expected:
            assert shown[name] == pytest.approx(expected[name], abs=0.01)
        by = results_by_name(pred["result"])
        assert by[labeling.CAD]["value"]["choices"] == [str(record.cad_index)]
        mesh_region = by[labeling.MESH_REGION_ID]
        w, h = mesh_region["original_width"], mesh_region["original_height"]
        mask = decode_brush(mesh_region["value"]["rle"], w, h)
        # The truth: the reference formula and rasteriser at the six values shown. The default
        # overlay draws the edges only (the photo stays visible): no fill, the outline drawn.
        mesh = tiny_dataset.cad.mesh(key.category, record.cad_index)
        shown_pose = Pose.from_degrees(**shown, viewport=record.pose.viewport)
        truth = reference_silhouette(mesh.vertices, mesh.faces, shown_pose, w, h)
        assert truth.sum() > 100 and not mask.any()
        edges = decode_brush(by[labeling.EDGES_REGION_ID]["value"]["rle"], w, h)
        covered, inside = edges_agree_with_silhouette(edges, truth)
        assert covered >= 0.95 and inside >= 0.99, (covered, inside)
        assert pred["model_version"] and isinstance(pred["score"], float)


def test_broken_tasks_fail_alone(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    good = task_for(tiny_dataset, tiny_keys[0], 1)
    tiny_dataset.image_path(tiny_keys[2]).unlink()
    no_image = {"id": 2, "data": {"object_key": str(tiny_keys[2])}}
    unknown_category = {"id": 3, "data": {"object_key": "boat/x_0"}}
    no_key = {"id": 4, "data": {"image": "x.jpg"}}
    traversal = {"id": 5, "data": {"object_key": "../../etc/passwd_0"}}
    (tiny_dataset.root / "CAD/car/03.off").write_text("OFF\n3 1 0\n0 0 0\n")  # corrupt mesh
    corrupt_cad = task_for(tiny_dataset, tiny_keys[1], 6)
    res = client.post("/predict", json={"tasks": [good, no_image, unknown_category, no_key,
                                                  traversal, corrupt_cad]})
    assert res.status_code == 200
    results = res.json["results"]
    assert len(results) == 6
    assert results[0]["result"] and all(r == [] for r in results[1:])


@pytest.mark.parametrize("body", [None, "not json", [], {"tasks": []}, {"tasks": "x"},
                                  {"tasks": [1, 2]}, {"tasks": [{}], "params": "x"},
                                  {"tasks": [{}], "params": {"context": 3}}])
def test_malformed_predict_is_400(tiny_dataset, body):
    client = make_client(tiny_dataset)
    if isinstance(body, str):
        res = client.post("/predict", data=body, content_type="application/json")
    else:
        res = client.post("/predict", json=body)
    assert res.status_code == 400 and "error" in res.json
    assert client.get("/health").status_code == 200


def test_basic_auth(tiny_dataset):
    client = make_client(tiny_dataset, basic_auth_user="ls", basic_auth_password="s3cret")
    assert client.post("/predict", json={"tasks": []}).status_code == 401
    import base64
    bad = base64.b64encode(b"ls:wrong").decode()
    good = base64.b64encode(b"ls:s3cret").decode()
    assert client.post("/setup", json={}, headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert client.post("/setup", json={}, headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/health").status_code == 200  # health checks carry no credentials


def test_thumbnails_and_metrics(tiny_dataset):
    client = make_client(tiny_dataset)
    res = client.get("/cad/car/3.png")
    assert res.status_code == 200 and res.data[:4] == b"\x89PNG"
    assert res.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/cad/car/2.png").status_code == 404
    assert client.get("/cad/nope/1.png").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pose6d_requests_total{route="/cad/<category>/<int:index>.png",status="200"} 1' in text


def test_request_size_limit(tiny_dataset):
    client = make_client(tiny_dataset, max_request_mb=0.01)
    res = client.post("/predict", data=b"{" + b" " * 20000 + b"}", content_type="application/json")
    assert res.status_code == 413


def test_webhook_syncs_and_refuses(tiny_dataset, tiny_keys):
    import ls_payloads as ls
    from pose6d.dataset import SYNCED

    client = make_client(tiny_dataset)
    key = str(tiny_keys[0])
    res = client.post("/webhook", json=ls.created(11, 1, key, updated=10,
                                                  result=ls.pose_result(azimuth=45.0)))
    assert res.status_code == 201, res.json
    record = tiny_dataset.read(tiny_keys[0], SYNCED)
    assert record.pose.azimuth == pytest.approx(math.radians(45.0))
    assert record.extra["object_status"] == "status_good"
    # The same event again changes nothing; an older update arriving late does not win.
    assert client.post("/webhook", json=ls.created(11, 1, key, updated=10,
                                                   result=ls.pose_result(azimuth=45.0))).status_code == 201
    client.post("/webhook", json=ls.updated(11, 1, key, updated=5, result=ls.pose_result(azimuth=1.0)))
    assert tiny_dataset.read(tiny_keys[0], SYNCED).pose.azimuth == pytest.approx(math.radians(45.0))
    # Invalid annotations are refused with a reason (422) and not written.
    res = client.post("/webhook", json=ls.created(12, 2, str(tiny_keys[1]), updated=11,
                                                  result=ls.pose_result(distance=-1.0)))
    assert res.status_code == 422 and "distance" in res.json["error"]
    assert tiny_dataset.read_optional(tiny_keys[1], SYNCED) is None
    res = client.post("/webhook", json=ls.deleted(11))
    assert res.status_code == 201 and tiny_dataset.read_optional(tiny_keys[0], SYNCED) is None


@pytest.mark.parametrize("body", [None, [], {"no": "action"}, {"action": 3},
                                  {"action": "ANNOTATION_CREATED"},
                                  {"action": "ANNOTATION_CREATED", "annotation": "x", "task": {}},
                                  {"action": "ANNOTATIONS_DELETED", "annotations": "x"}])
def test_malformed_webhook_is_400(tiny_dataset, body):
    client = make_client(tiny_dataset)
    res = client.post("/webhook", json=body)
    assert res.status_code == 400 and "error" in res.json
    assert client.get("/health").status_code == 200


def test_failed_sync_is_retried_by_a_later_event(tiny_dataset, tiny_keys, monkeypatch):
    """Label Studio never resends a webhook: a write that failed (disk full) is applied when a
    later event arrives and the disk works again."""
    import ls_payloads as ls
    from ml_backend import model as model_module
    from pose6d.dataset import SYNCED, Dataset

    client = make_client(tiny_dataset)
    real_write = Dataset.write

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Dataset, "write", disk_full)
    res = client.post("/webhook", json=ls.created(51, 1, str(tiny_keys[0]), updated=10,
                                                  result=ls.pose_result(azimuth=12.0)))
    assert res.status_code == 503
    assert tiny_dataset.read_optional(tiny_keys[0], SYNCED) is None
    monkeypatch.setattr(Dataset, "write", real_write)
    monkeypatch.setattr(model_module, "RETRY_FAILED_S", 0.0)
    res = client.post("/webhook", json=ls.created(52, 2, str(tiny_keys[1]), updated=11,
                                                  result=ls.pose_result(azimuth=20.0, cad="3")))
    assert res.status_code == 201
    assert tiny_dataset.read(tiny_keys[0], SYNCED).pose.azimuth == pytest.approx(math.radians(12.0))
