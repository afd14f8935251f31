"""ls_admin.snapshot: the streaming reader of a JSON array (checked against json.loads of the
whole text), and export snapshots of a REAL Label Studio project (skipped-only tasks included,
the snapshot removed from Label Studio afterwards, a refused snapshot a one-line error)."""
from __future__ import annotations

import io
import json
import random

import pytest

from ls_admin.snapshot import iter_json_array

ITEMS = [{"data": {"object_key": "car/é_0"}, "annotations": [{"id": 1, "result": []}]},
         12345678, -0.5e10, 2.25, "a \"quoted\" ü", [], {}, True, None, [1, [2, [3]]]]


@pytest.mark.parametrize("seed", range(40))
def test_items_match_json_loads_whatever_the_chunk(seed):
    rng = random.Random(seed)
    items = [rng.choice(ITEMS) for _ in range(rng.randint(0, 25))]
    text = json.dumps(items, ensure_ascii=False, indent=rng.choice([None, 1, 4]))
    for chunk in (1, 2, 3, 5, 16, 1 << 20):
        assert list(iter_json_array(io.StringIO(text), chunk)) == json.loads(text)


@pytest.mark.parametrize("text", ["", "  ", "{}", "7", "[1,2", "[1 2]", "[1,]", '[{"a": 1}',
                                  "[1,", "[tru", "[2.]", "[1, 2] x", '["open'])
def test_what_is_not_one_json_array_is_a_value_error(text):
    try:  # the reference: json.loads says it is not a JSON array
        assert not isinstance(json.loads(text), list)
    except ValueError:
        pass
    with pytest.raises(ValueError):
        list(iter_json_array(io.StringIO(text), 2))


@pytest.mark.live
def test_snapshot_of_a_real_project(label_studio, tiny_dataset, tmp_path, monkeypatch):
    from label_studio_sdk.core.api_error import ApiError

    import ls_payloads as P
    from ls_admin.connection import AdminError
    from ls_admin.project import ensure_project
    from ls_admin.snapshot import annotated_tasks, snapshot_tasks
    from pose6d.tasks import object_task

    client = label_studio.client()
    project, _ = ensure_project(client, "snapshot reader")
    client.projects.import_tasks(id=project.id, request=[
        object_task(tiny_dataset, key) for key in tiny_dataset.objects()])
    ids = sorted(t.id for t in client.tasks.list(project=project.id))
    client.annotations.create(id=ids[0], result=P.pose_result(), was_cancelled=False)
    client.annotations.create(id=ids[1], result=[], was_cancelled=True)  # skipped only
    client.annotations.create(id=ids[2], result=[], was_cancelled=True)  # skipped, then done
    client.annotations.create(id=ids[2], result=P.pose_result(), was_cancelled=False)

    tasks = list(annotated_tasks(client, project.id, workdir=tmp_path))
    assert sorted(t["id"] for t in tasks) == ids[:3]  # each once, skipped-only included
    listed = {t.id: t for t in client.tasks.list(project=project.id, fields="all")}
    for task in tasks:  # the same annotations as the paged listing, shaped as the webhook's
        assert task["data"] == listed[task["id"]].data
        assert ({(a["id"], a["was_cancelled"], a["completed_by"]) for a in task["annotations"]}
                == {(a["id"], a["was_cancelled"], a["completed_by"])
                    for a in listed[task["id"]].annotations})
        assert all(a["task"] == task["id"] and a["updated_at"] for a in task["annotations"])
    assert list(client.projects.exports.list(id=project.id)) == []  # removed once read
    assert list(snapshot_tasks(client, project.id, {"annotated": "only"})) != []

    def refused(**kwargs):
        raise ApiError(status_code=403, body={"detail": "You do not have permission"})

    monkeypatch.setattr(client.projects.exports, "create", refused)
    with pytest.raises(AdminError, match=f"creating the export snapshot of project {project.id} "
                                         "failed.*permission"):
        list(annotated_tasks(client, project.id))
