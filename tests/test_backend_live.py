"""The backend inside a REAL Label Studio: connected as an ML backend, Label Studio fetches the
predictions (pose, CAD, overlay) from it, and an annotation created through the API is synced
to annotations_new/ by Label Studio's webhook."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from checks import decode_brush, edges_agree_with_silhouette, wait_for
from ls_admin.backend_process import BackendProcess
from pose6d import labeling as L
from pose6d.camera import POSE_NAMES
from pose6d.dataset import SYNCED
from pose6d.camera import Pose
from reference_camera import reference_silhouette
from pose6d.tasks import iter_tasks, task_object_key

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.live


def test_label_studio_fetches_predictions_and_syncs(label_studio, tiny_dataset, tiny_keys, tmp_path):
    client = label_studio.client()
    with BackendProcess(tiny_dataset.root, log_path=tmp_path / "backend.log") as backend:
        project = client.projects.create(title="pose6d backend live",
                                         label_config=(REPO / "labeling_config/pose6d.xml").read_text())
        label_studio.connect_local_files(project.id, tiny_dataset.root)
        client.ml.create(project=project.id, url=backend.url, is_interactive=True, title="pose6d")
        prefix = label_studio.local_files_url(tiny_dataset.root) + "/"
        tasks = list(iter_tasks(tiny_dataset, image_url_prefix=prefix, predictions=False))
        client.projects.import_tasks(id=project.id, request=tasks)
        client.actions.create(id="retrieve_tasks_predictions", project=project.id,
                              selected_items={"all": True, "excluded": []})

        def all_predicted():
            listed = list(client.tasks.list(project=project.id, fields="all"))
            return listed if listed and all(t.predictions for t in listed) else None

        stored = wait_for(all_predicted, what="predictions from the backend")
        assert len(stored) == len(tiny_keys)
        for task in stored:
            (prediction,) = task.predictions
            key = task_object_key(task.data)
            record = tiny_dataset.read(key)
            values = L.read_results(prediction.result)
            for name, value in record.pose.as_degrees().items():
                assert values.numbers[name] == pytest.approx(value, abs=0.01)
            assert values.choices[L.CAD] == str(record.cad_index)
            edges_region = next(r for r in values.regions if r["id"] == L.EDGES_REGION_ID)
            w, h = edges_region["original_width"], edges_region["original_height"]
            edges = decode_brush(edges_region["value"]["rle"], w, h)
            mesh = tiny_dataset.cad.mesh(key.category, record.cad_index)
            shown = Pose.from_degrees(**values.numbers, viewport=record.pose.viewport)
            truth = reference_silhouette(mesh.vertices, mesh.faces, shown, w, h)
            covered, inside = edges_agree_with_silhouette(edges, truth)
            assert truth.any() and covered >= 0.95 and inside >= 0.99, (covered, inside)
            assert prediction.model_version.startswith("pose6d")

        # An annotator's submission (through the API): the webhook syncs it to the dataset.
        task = stored[0]
        key = task_object_key(task.data)
        final = {"azimuth": 101.5, "elevation": 12.25, "theta": -3.0, "distance": 7.5,
                 "px": 150.0, "py": 118.0}
        result = [{"from_name": n, "to_name": L.IMAGE, "type": "number", "value": {"number": v}}
                  for n, v in final.items()]
        result += [L.choice_result(L.CAD, "3" if key.category == "car" else "1"),
                   L.choice_result(L.QUALITY, "partially visible"), L.choice_result(L.DENSE, "yes")]
        client.annotations.create(id=task.id, result=result)
        path = tiny_dataset.record_path(key, SYNCED)
        wait_for(path.exists, what=f"{path} written by the webhook")
        synced = tiny_dataset.read(key, SYNCED)
        for name in POSE_NAMES:
            expected = math.radians(final[name]) if name in ("azimuth", "elevation", "theta") else final[name]
            assert getattr(synced.pose, name) == pytest.approx(expected, abs=1e-9)
        assert synced.extra["object_status"] == "status_partially"
        assert synced.extra["dense"] == "dense_yes"
        assert int(synced.extra["ls_task_id"]) == task.id
