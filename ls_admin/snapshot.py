"""Reading a whole project from Label Studio through an export snapshot.

Label Studio's paged task listing (``tasks.list(fields="all")``) slows down as a project grows:
each page re-runs the Data Manager's query, later pages cost more (179 annotated tasks/s over the
first 10,000 of 100k on 2 cores, about 90/s over all of them). An export snapshot serializes the
tasks in one server-side pass (573 tasks/s over 100k, benchmarks/bench_scale.py) from a task id
list fixed when it starts, so pages cannot shift under it while annotators work.
``snapshot_tasks`` makes one, streams it to a temporary file, deletes it from Label Studio and
yields its tasks one at a time (the file is parsed incrementally: memory does not grow with the
project).

Each task is a dict shaped like the webhook's: ``id``, ``project``, ``data``, ``annotations``
(each with ``id``, ``task``, ``project``, ``completed_by`` as a user id, ``updated_at``,
``was_cancelled``, ``result``). Predictions and drafts are left out (ids only).
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

from label_studio_sdk import LabelStudio

from ls_admin.connection import AdminError, api_error_text, with_retries

CHUNK = 1 << 20  # characters read from the downloaded snapshot at a time
POLL_S = 0.5  # between status checks of a snapshot Label Studio builds in the background
TIMEOUT_S = 3600.0  # a snapshot not done by then is an error (100k tasks take ~3 min)
# Without Redis, Label Studio builds the snapshot inside the create request: it must not time out.
REQUEST = {"timeout_in_seconds": int(TIMEOUT_S)}
# Task filters of the snapshots ``annotated_tasks`` takes: Label Studio's "annotated" filter
# keeps tasks with an annotation that is NOT cancelled, so skipped-only tasks need a second one.
ANNOTATED = ({"annotated": "only"}, {"skipped": "only"})
DELIMITERS = frozenset(",] \t\r\n")  # what may follow an item of the array
IDS_ONLY = {"predictions": {"only_id": True}, "drafts": {"only_id": True},
            "include_annotation_history": False}


def iter_json_array(text: TextIO, chunk: int = CHUNK) -> Iterator[Any]:
    """The items of a JSON array read from the text stream ``text`` one at a time (memory: one
    item plus a chunk). ValueError when the text is not one JSON array."""
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False

    def fill() -> bool:  # append the next chunk; False at the end of the stream
        nonlocal buf, pos, eof
        data = "" if eof else text.read(chunk)
        if not data:
            eof = True
            return False
        buf, pos = buf[pos:] + data, 0
        return True

    def peek() -> str:  # the next character that is not white space, "" at the end
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos].isspace():
                pos += 1
            if pos < len(buf) or not fill():
                return buf[pos] if pos < len(buf) else ""

    if peek() != "[":
        raise ValueError("not a JSON array")
    pos += 1
    if peek() == "]":
        return
    while True:
        if not peek():
            raise ValueError("the JSON array ends after a ','")
        while True:  # an item may run over the chunk ("2" of "2.5" too: it must end at a delimiter)
            try:
                item, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                end = -1
            if end >= 0 and (eof or (end < len(buf) and buf[end] in DELIMITERS)):
                break
            if not fill():
                if end < 0:
                    raise ValueError("the JSON array ends inside an item")
                break
        pos = end
        yield item
        after = peek()
        if after == "]":
            pos += 1
            if peek():
                raise ValueError("text after the end of the JSON array")
            return
        if after != ",":
            raise ValueError(f"expected ',' or ']' in the JSON array, found {after or 'its end'!r}")
        pos += 1


def snapshot_tasks(client: LabelStudio, project_id: int, task_filter: dict | None = None,
                   workdir: Path | None = None) -> Iterator[dict]:
    """The project's tasks (filtered by Label Studio's export ``task_filter_options``) from one
    export snapshot, as described in the module docstring. The snapshot is deleted from Label
    Studio and the temporary file removed once read (or on an error). AdminError (one line)
    when Label Studio fails or the snapshot is not valid JSON."""
    what = f"the export snapshot of project {project_id}"
    try:
        export = with_retries(lambda: client.projects.exports.create(
            id=project_id, title="pose6d snapshot (temporary)",
            task_filter_options=task_filter or {}, serialization_options=IDS_ONLY,
            request_options=REQUEST))
    except Exception as exc:  # noqa: BLE001 - SDK / transport: one line
        raise AdminError(f"creating {what} failed: {api_error_text(exc)}") from None
    try:
        _wait(client, project_id, export, what)
        with tempfile.TemporaryFile(dir=workdir) as file:
            def download() -> None:
                file.seek(0)
                file.truncate()
                for part in client.projects.exports.download(
                        id=project_id, export_pk=export.id, export_type="JSON",
                        request_options=REQUEST):
                    file.write(part)

            try:
                with_retries(download)
            except Exception as exc:  # noqa: BLE001
                raise AdminError(f"downloading {what} failed: {api_error_text(exc)}") from None
            file.seek(0)
            try:
                for task in iter_json_array(io.TextIOWrapper(file, encoding="utf-8")):
                    if isinstance(task, dict):
                        task.setdefault("project", project_id)
                        yield task
            except (ValueError, UnicodeDecodeError) as exc:
                raise AdminError(f"{what} is not valid JSON: {exc}") from None
    finally:
        try:
            client.projects.exports.delete(id=project_id, export_pk=export.id)
        except Exception:  # noqa: BLE001 - a leftover snapshot is harmless; the result stands
            pass


def _wait(client: LabelStudio, project_id: int, export: Any, what: str) -> None:
    """Until the snapshot is built (at once without Redis: the create request built it)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        status = str(getattr(export, "status", "") or "")
        if status == "completed":
            return
        if status == "failed":
            raise AdminError(f"Label Studio could not build {what} (its log says why)")
        if time.monotonic() > deadline:
            raise AdminError(f"{what} was not ready after {TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
        try:
            export = with_retries(lambda: client.projects.exports.get(id=project_id,
                                                                      export_pk=export.id))
        except Exception as exc:  # noqa: BLE001
            raise AdminError(f"reading the status of {what} failed: {api_error_text(exc)}") from None


def annotated_tasks(client: LabelStudio, project_id: int,
                    workdir: Path | None = None) -> Iterator[dict]:
    """Every task of the project with an annotation, submitted or skipped, each once."""
    seen: set[int] = set()
    for task_filter in ANNOTATED:
        for task in snapshot_tasks(client, project_id, task_filter, workdir):
            if task.get("id") not in seen:
                seen.add(task.get("id"))
                yield task
