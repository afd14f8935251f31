"""Set up (idempotently) a Label Studio project for a dataset and import its objects as tasks.

``setup_project(client, options)`` makes sure that:
1. the project exists (found by id, or by exact title; else created) with labeling_config/pose6d.xml;
2. the backend is connected as an interactive ML backend (once per URL);
3. the sync webhook ``<backend>/webhook`` exists (Label Studio makes it with the ML backend,
   label_studio/ml/models.py create_ml_webhook; it is re-made only if someone deleted it) and
   sends only the actions the sync handles (``SYNC_ACTIONS``): Label Studio's own sends all,
   and TASKS_CREATED alone, serialising every imported batch and posting it to the backend
   inside the import request, made imports four times slower (benchmarks/bench_scale.py);
4. Label Studio can show the photos: a local-files import storage on the data root
   (ls_admin.local_files) or image URLs with a prefix;
5. every selected object not yet in the project is imported as one task with its initial pose as
   a prediction, in batches; objects already there (by ``data.object_key``) are left alone;
6. with ``prefill_fit``, the new objects are fitted ahead and sorted by fit score in a Data
   Manager view (ls_admin.prefill).
"""
from __future__ import annotations

import base64
import dataclasses
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from label_sync.journal import SYNC_ACTIONS  # the actions the webhook sends
from ls_admin.connection import AdminError, api_error_text, sdk_call
from ls_admin.dm_views import ensure_default_view
from ls_admin.local_files import ensure_local_storage
from pose6d.dataset import INITIAL, Dataset, ObjectKey
from pose6d.errors import BadInput, DataError
from pose6d.cad_gallery import THUMBNAILS, write_thumbnails
from pose6d import labeling as L
from pose6d.labeling_config import build_config, read_config
from pose6d.tasks import TaskError, object_task

DEFAULT_TITLE = "pose6d"
ML_TITLE = "pose6d backend"
LIST_PAGE = 1000  # tasks per page when reading object keys back
# Tasks per import request. Label Studio's per-request work grows with the project's size
# (counters, stats, its project state), so on a 100k project bigger batches cost less in all
# (benchmarks/bench_scale.py); a batch is one transaction, about 1.6 MB of JSON.
DEFAULT_BATCH = 2000


@dataclasses.dataclass
class SetupOptions:
    """What to set up; see scripts/setup_project.py --help."""

    data_root: Path
    backend_url: str
    title: str = DEFAULT_TITLE
    project_id: int | None = None
    categories: list[str] | None = None
    keys: list[ObjectKey] | None = None
    limit: int | None = None
    batch_size: int = DEFAULT_BATCH
    image_url_prefix: str | None = None  # None: Label Studio local files on the data root
    predictions: bool = False  # True: import the initial pose as a prediction (pose6d.tasks)
    pictures: bool = True  # the CAD choice shows the models' pictures (pose6d.cad_gallery)
    progress: bool = True
    backend_auth: tuple[str, str] | None = None  # (user, password) when the backend uses basic auth
    prefill_fit: bool = False  # fit the poses ahead, data.fit_score, a view sorted by it
    fit_workers: int = 1


@dataclasses.dataclass
class SetupReport:
    """What setup_project found and did."""

    project_id: int
    project_url: str
    steps: list[str] = dataclasses.field(default_factory=list)  # one line per ensured item
    imported: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (key, reason)
    import_seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = f" in {self.import_seconds:.1f} s" if self.imported else ""
        out = [f"project {self.project_id}: {self.project_url}", *self.steps,
               f"tasks: imported {self.imported}{rate}, already present {self.present}, "
               f"skipped {len(self.skipped)}"]
        out += [f"  skipped {key}: {reason}" for key, reason in self.skipped]
        return out


# --- The project, the backend, the webhook. ---


def label_config() -> str:
    """The labeling config (labeling_config/pose6d.xml is the same text, committed)."""
    return build_config()


def find_project(client: LabelStudio, title: str, project_id: int | None = None) -> Any | None:
    """The project with ``project_id`` (AdminError if missing), else the one titled exactly
    ``title`` (AdminError if several), else None."""
    if project_id is not None:
        try:
            return client.projects.get(id=project_id)
        except ApiError as exc:
            if exc.status_code == 404:
                raise AdminError(f"no project {project_id} in Label Studio") from None
            raise AdminError(f"reading project {project_id} failed: {api_error_text(exc)}") from None
    found = [p for p in sdk_call("listing projects", client.projects.list, title=title)
             if p.title == title]  # the API filter is a case-insensitive substring match
    if len(found) > 1:
        ids = ", ".join(str(p.id) for p in found)
        raise AdminError(f"{len(found)} projects are titled {title!r} (ids {ids}); pass --project-id")
    return found[0] if found else None


def ensure_project(client: LabelStudio, title: str, project_id: int | None = None) -> tuple[Any, str]:
    """(project, what happened): created, config updated, or found unchanged."""
    config = label_config()
    project = find_project(client, title, project_id)
    if project is None:
        project = sdk_call("creating the project", client.projects.create, title=title,
                           label_config=config)
        return project, "created"
    if (project.label_config or "").strip() != config.strip():
        sdk_call(f"updating the labeling config of project {project.id}", client.projects.update,
                 id=project.id, label_config=config)
        return project, "labeling config updated" + _drop_stale_overlays(
            client, project.id, project.label_config or "", config)
    return project, "found"


def _drop_stale_overlays(client: LabelStudio, project_id: int, old: str, new: str) -> str:
    """After a config update that changed the overlay's control type (a project made before
    the overlay moved to a Taxonomy that is never stored): delete the project's predictions,
    whose overlay regions the new config cannot draw; Label Studio then asks the backend for
    new ones when a task opens. Annotations are kept. Returns a note for the setup report."""
    try:
        before = read_config(old).control_types.get(L.OVERLAY)
    except BadInput:
        return ""
    after = read_config(new).control_types.get(L.OVERLAY)
    if before is None or before == after:
        return ""
    sdk_call(f"deleting the predictions of project {project_id} (their {before} overlay cannot be "
             "drawn with the new config)", client.actions.create, id="delete_tasks_predictions",
             project=project_id, selected_items={"all": True, "excluded": []})
    return (f"; its predictions were deleted (their {before} overlay cannot be drawn any more; "
            "the backend predicts again when a task opens; annotations are kept)")


def ensure_ml_backend(client: LabelStudio, project_id: int, backend_url: str,
                      auth: tuple[str, str] | None = None) -> tuple[Any, str]:
    """The project's ML backend at ``backend_url``, interactive (Label Studio calls its /setup
    and /health now, so the backend must be running). ``auth``: basic-auth (user, password)."""
    url = backend_url.rstrip("/")
    backends = sdk_call("listing ML backends", client.ml.list, project=project_id)
    same = [b for b in backends if (b.url or "").rstrip("/") == url]
    what = f"Label Studio cannot use the ML backend at {url} (is it running, reachable " \
           "from Label Studio, and are the basic-auth credentials right?)"
    credentials = {"auth_method": "BASIC_AUTH", "basic_auth_user": auth[0],
                   "basic_auth_pass": auth[1]} if auth else {}
    if not same:
        ml = sdk_call(what, client.ml.create, project=project_id, url=url, is_interactive=True,
                      title=ML_TITLE, **credentials)
        return ml, "connected (interactive)"
    ml = same[0]
    if not ml.is_interactive or auth:
        ml = sdk_call(what, client.ml.update, id=ml.id, is_interactive=True, **credentials)
        return ml, "updated (interactive)"
    return ml, "already connected (interactive)"


def webhook_url(backend_url: str) -> str:
    return backend_url.rstrip("/") + "/webhook"


def auth_headers(auth: tuple[str, str] | None) -> dict[str, str]:
    """The Authorization header a webhook needs to reach a backend with basic auth."""
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()}


def _actions(hook: Any) -> set[str]:
    """The hook's actions as plain names (the SDK may give enum members)."""
    return {getattr(a, "value", a) for a in (hook.actions or [])}


def ensure_webhook(client: LabelStudio, project_id: int, backend_url: str,
                   auth: tuple[str, str] | None = None) -> str:
    """Make sure the sync webhook exists, is active, sends only ``SYNC_ACTIONS`` and carries the
    backend's credentials (the one Label Studio creates with the ML backend sends every action
    and has no credentials); says what it found or did."""
    url = webhook_url(backend_url)
    headers = auth_headers(auth)
    actions = {"send_for_all_actions": False, "actions": list(SYNC_ACTIONS)}
    hooks = [h for h in sdk_call("listing webhooks", client.webhooks.list, project=str(project_id))
             if h.url == url and h.project in (None, project_id)]
    if not hooks:  # someone deleted the one Label Studio made with the ML backend
        sdk_call("creating the sync webhook", client.webhooks.create, project=project_id, url=url,
                 send_payload=True, is_active=True, headers=headers, **actions)
        return "created"
    hook = hooks[0]
    if not any(h.is_active for h in hooks) or (headers and (hook.headers or {}) != headers) \
            or hook.send_for_all_actions or _actions(hook) != set(SYNC_ACTIONS):
        sdk_call("updating the sync webhook", client.webhooks.update, id=hook.id, url=url,
                 is_active=True, **actions, **({"headers": headers} if headers else {}))
        return "updated"
    return "present"


# --- Tasks. ---


def existing_object_keys(client: LabelStudio, project_id: int) -> set[str]:
    """``data.object_key`` of every task of the project (ids and data only, big pages)."""
    pages = sdk_call("listing tasks", client.tasks.list, project=project_id, include="id,data",
                     page_size=LIST_PAGE)
    try:
        return {str(t.data.get("object_key")) for t in pages if isinstance(t.data, dict)}
    except ApiError as exc:
        raise AdminError(f"listing tasks failed: {api_error_text(exc)}") from None


def select_keys(dataset: Dataset, categories: list[str] | None = None,
                keys: list[ObjectKey] | None = None) -> list[ObjectKey]:
    """The objects to set up: ``keys`` (in that order, kept even when unknown so they are
    reported as skipped) else every object of ``categories`` (or of all), sorted."""
    if keys is not None:
        return [k for k in keys if not categories or k.category in categories]
    return dataset.objects(INITIAL, categories)


def parse_keys(text: str) -> list[ObjectKey]:
    """Object keys from a file (one per line, # comments) or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        items = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    else:
        items = [item.strip() for item in text.split(",")]
    try:
        return [ObjectKey.parse(item) for item in items if item]
    except DataError as exc:
        raise AdminError(f"bad object key in --keys: {exc}") from None


def new_tasks(dataset: Dataset, keys: Iterable[ObjectKey], present: set[str],
              limit: int | None, report: SetupReport, task_kwargs: dict[str, Any],
              tick: Callable[[], None] = lambda: None,
              fit_scores: dict[str, float] | None = None) -> Iterator[dict[str, Any]]:
    """Tasks of the objects among the first ``limit`` selected ones that are not ``present``.

    Objects already in the project count towards the limit (so a re-run with the same limit
    adds nothing); objects that cannot become tasks do not, and are reported as skipped.
    fit_scores: {object key: prefill fit score} for ``data.fit_score``.
    """
    selected = 0
    for key in keys:
        if limit is not None and selected >= limit:
            return
        tick()
        if str(key) in present:
            report.present += 1
            selected += 1
            continue
        try:
            task = object_task(dataset, key, **task_kwargs,
                               fit_score=(fit_scores or {}).get(str(key)))
        except TaskError as exc:
            report.skipped.append((str(key), str(exc).removeprefix(f"{key}: ")))
            continue
        selected += 1
        yield task


def batched(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_batches(client: LabelStudio, project_id: int, tasks: Iterable[dict],
                   batch_size: int = DEFAULT_BATCH) -> int:
    """POST the tasks (with their predictions) in batches; returns how many were imported.

    One batch is in flight while the next is being built (reading npz files and image headers
    overlaps Label Studio's work). One batch is one transaction in Label Studio: after a
    failure, a re-run imports the rest.
    """
    def post(batch: list[dict], first: int) -> int:
        result = sdk_call(f"importing tasks {first}-{first + len(batch) - 1}",
                          client.projects.import_tasks, id=project_id, request=batch)
        return int(result.task_count if result.task_count is not None else len(batch))

    total, sent = 0, 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in batched(tasks, batch_size):
            if pending is not None:
                total += pending.result()
            pending = pool.submit(post, batch, sent + 1)
            sent += len(batch)
        if pending is not None:
            total += pending.result()
    return total


def set_prediction_version(client: LabelStudio, project: Any, version: str) -> None:
    """Show annotators the predictions of ``version`` (Label Studio filters by the project's
    model_version; an ML backend's title there makes it ask the backend on every task open)."""
    if getattr(project, "model_version", None) != version:
        sdk_call("setting the project's model version", client.projects.update, id=project.id,
                 model_version=version)


def setup_project(client: LabelStudio, options: SetupOptions, base_url: str) -> SetupReport:
    """Run steps 1-5 of the module docstring; AdminError (one line) on any failure."""
    from tqdm import tqdm

    dataset = Dataset(options.data_root)
    if not (dataset.root / INITIAL).is_dir():
        raise AdminError(f"{dataset.root} is not a dataset root (no {INITIAL}/ folder)")
    keys = select_keys(dataset, options.categories, options.keys)
    if not keys:
        raise AdminError(f"no objects selected in {dataset.root} (check --categories / --keys)")

    project, state = ensure_project(client, options.title, options.project_id)
    report = SetupReport(project.id, f"{base_url.rstrip('/')}/projects/{project.id}/data")
    report.steps.append(f"project {options.title!r}: {state}")
    report.steps.append(ensure_default_view(client, project.id))  # before any other tab
    ml, state = ensure_ml_backend(client, project.id, options.backend_url, options.backend_auth)
    report.steps.append(f"ML backend {options.backend_url.rstrip('/')}: {state}")
    report.steps.append(f"sync webhook {webhook_url(options.backend_url)}: "
                        f"{ensure_webhook(client, project.id, options.backend_url, options.backend_auth)}")
    prefix = options.image_url_prefix
    if prefix is None:
        prefix, state = ensure_local_storage(client, project.id, dataset.root)
        report.steps.append(f"images: {state}")
    else:
        report.steps.append(f"images: URLs {prefix}<path below the data root>")

    if options.pictures:
        try:
            written = write_thumbnails(dataset, {k.category for k in keys}, progress=options.progress)
        except (OSError, DataError) as exc:
            raise AdminError(f"cannot write the CAD pictures under {dataset.root}: {exc} "
                             "(or pass --no-pictures)") from None
        report.steps.append(f"CAD pictures: {written} written under {dataset.root / THUMBNAILS}")

    present = existing_object_keys(client, project.id)
    fit_scores = _prefill(client, project.id, dataset, keys, present, options, report) \
        if options.prefill_fit else None
    total = len(keys) if options.limit is None else min(len(keys), options.limit)
    bar = tqdm(total=total, desc="import", unit="obj", file=sys.stderr, disable=not options.progress)
    kwargs = {"image_url_prefix": prefix, "predictions": options.predictions,
              "pictures": options.pictures}
    tasks = new_tasks(dataset, keys, present, options.limit, report, kwargs, lambda: bar.update(),
                      fit_scores)
    start = time.perf_counter()
    try:
        report.imported = import_batches(client, project.id, tasks, options.batch_size)
    finally:
        bar.close()
    report.import_seconds = time.perf_counter() - start
    # The backend's title as the project's model version: Label Studio prefers its predictions
    # (the pose plus the rendered overlay) over imported ones, which lack the overlay.
    set_prediction_version(client, project, ml.title)
    return report


def _prefill(client: LabelStudio, project_id: int, dataset: Dataset, keys: list[ObjectKey],
             present: set[str], options: SetupOptions, report: SetupReport) -> dict[str, float]:
    """Step 6 before the import: fit the objects to import, the view; their fit scores."""
    from ls_admin.prefill import backend_prefills, ensure_fit_view, prefill_fits

    todo = [k for k in keys[:options.limit] if str(k) not in present]
    scores, failed = prefill_fits(dataset, todo, options.fit_workers, options.progress)
    report.steps.append(f"prefill fit: {len(scores)} objects fitted ahead, {len(failed)} could not "
                        "be (they show the model's pose)")
    report.steps += [f"  not fitted {key}: {why}" for key, why in failed]
    report.steps.append(ensure_fit_view(client, project_id))
    if backend_prefills(options.backend_url, auth_headers(options.backend_auth)) is False:
        report.steps.append("WARNING: the backend does not fit at prefill, so tasks show the "
                            "model's pose while the view sorts by fit score: start it with "
                            "--prefill-fit (POSE6D_PREFILL_FIT=1)")
    return scores
