"""Issue 23, the backend's side: lines kept in the command box while the backend did not
answer are all run by the next call, in order; when one of them is refused, the message says
that none of them ran and lists them (nothing is dropped silently)."""
from __future__ import annotations

import pytest

from backend_helpers import command_context, interactive_body, make_client, numbers_of, task_for
from ml_backend.commands import ERROR_MARK
from pose6d import labeling
from pose6d.labeling import shown_pose


def _send(client, task, numbers, cad, text: str) -> list[dict]:
    body = interactive_body(task, command_context(numbers, cad, "x"))
    box = body["params"]["context"]["result"][-1]
    box["value"]["text"] = text.split("\n")  # the kept lines, as Label Studio sends them
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.data[:300]
    return response.json["results"][0]["result"]


def test_kept_lines_all_run_or_are_named(tiny_dataset, tiny_keys):
    client = make_client(tiny_dataset)
    key = tiny_keys[0]
    task = task_for(tiny_dataset, key, 31)
    record = tiny_dataset.read(key)
    start = {n: round(v, labeling.NUMBER_SPECS[n].decimals)
             for n, v in shown_pose(record.pose).as_degrees().items()}
    result = _send(client, task, start, record.cad_index, "a+\ne+\nt+")
    moved = numbers_of(result)
    assert moved == pytest.approx(dict(start, azimuth=start["azimuth"] + 1,
                                       elevation=start["elevation"] + 1,
                                       theta=start["theta"] + 1), abs=1e-9)
    text = [r for r in result if r["from_name"] == labeling.COMMAND][0]["value"]["text"]
    assert text == []  # the box is emptied: nothing waits any more

    result = _send(client, task, moved, record.cad_index, "a+\nzz\ne+")
    assert not numbers_of(result)  # refused: nothing changed
    (message,) = [r for r in result if r["from_name"] == labeling.COMMAND][0]["value"]["text"]
    assert message.startswith(ERROR_MARK) and "'zz'" in message
    assert "none of these 3 lines ran: a+ | zz | e+" in message
    assert message.endswith("\n")  # the page's sign of a backend line (PAGE_CSS)

    # one line only: the message is the error alone
    (single,) = [r for r in _send(client, task, moved, record.cad_index, "zz")
                 if r["from_name"] == labeling.COMMAND][0]["value"]["text"]
    assert single.startswith(ERROR_MARK) and "none of these" not in single
