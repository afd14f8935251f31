"""The blind A/B evaluation project (``pose6d-evaluate create``).

Per object that both pose sources have, a *pair*: the photo twice, with the pose of source A
(default ``initial``: the pretrained model's, annotations/) and of source B (default ``synced``:
the human's, annotations_new/) drawn over it as the annotator sees it (the visible edges in the
overlay's yellow), placed left / right at random. The key (which source is left) is kept only in
the store (label_sync.quality_store's pose6d_qc_pair): a task's data holds the pair's opaque id
and two image URLs, and the renders are files with random names, <data root>/qc_renders/
<32 hex digits>.png, served by Label Studio like the photos.

An evaluation is named by its title. Re-running adds only objects not yet in it: a pair once
made is never re-rendered nor re-randomised; a pair missing from the project (a new or emptied
project) is imported again unless it already has a rating (``re_ask`` asks again). Ratings
(label_sync.evaluation) stay in the store whatever happens to the project.
"""
from __future__ import annotations

import dataclasses
import random
import secrets
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from label_sync.evaluation import DATA_LEFT, DATA_PAIR, DATA_RIGHT, labeling_config
from label_sync.quality_store import EVALUATION, Pair, QualityStore
from ls_admin.connection import AdminError, sdk_call
from ls_admin.local_files import ensure_local_storage
from ls_admin.project import LIST_PAGE, find_project, import_batches
from pose6d.camera import DEFAULT_VIEWPORT, POSE_NAMES, Pose
from pose6d.dataset import GROUND_TRUTH, INITIAL, SYNCED, Dataset, ObjectKey
from pose6d.errors import DataError
from pose6d.labels import BAD_QUALITY
from pose6d.overlay import EDGE_COLOR
from pose6d.predictions import prediction_pose, read_predictions
from pose6d.tasks import image_url

DEFAULT_TITLE = "pose6d evaluation"
RENDERS = "qc_renders"  # below the data root
# The dataset's own pose sources; any other is file:PATH (pose6d.predictions).
FOLDER_SOURCES = {"initial": INITIAL, "synced": SYNCED, "ground_truth": GROUND_TRUTH}
EDGE_WIDTH = 2  # px, as the annotator's overlay (ml_backend.overlay_regions)
CROP_MARGIN, MIN_CROP = 0.35, 160  # the crop around both renders: margin share, smallest side
# PNG's fastest compression: a pair is written in 60 ms instead of 210 ms, 20% bigger (measured
# on the demo photos; docs/quality_control.md).
PNG_OPTIONS = {"compress_level": 1}


@dataclasses.dataclass
class PoseSource:
    """A pose per object: a dataset folder, or a predictions file (``file:PATH``)."""

    spec: str
    folder: str | None = None
    rows: dict[str, dict[str, Any]] | None = None

    @classmethod
    def parse(cls, spec: str) -> "PoseSource":
        if spec in FOLDER_SOURCES:
            return cls(spec, folder=FOLDER_SOURCES[spec])
        if spec.startswith("file:") and len(spec) > 5:
            try:
                return cls(spec, rows=read_predictions(Path(spec[5:])))
            except DataError as exc:
                raise AdminError(str(exc)) from None
        raise AdminError(f"unknown pose source {spec!r}: use {', '.join(FOLDER_SOURCES)} or "
                         "file:PATH (a predictions file, as the backend's --pose-source)")

    def keys(self, dataset: Dataset, categories: list[str] | None) -> set[ObjectKey]:
        if self.folder is not None:
            return set(dataset.objects(self.folder, categories))
        out = set()
        for text in self.rows or {}:
            try:
                key = ObjectKey.parse(text)
            except DataError:
                continue
            if not categories or key.category in categories:
                out.add(key)
        return out

    def pose(self, dataset: Dataset, key: ObjectKey) -> dict[str, Any]:
        """{pose values in degrees, viewport, cad_index} of ``key``; DataError when the source
        has no usable pose for it (none, "bad quality - no object", a rejected label)."""
        if self.folder is not None:
            record = dataset.read_optional(key, self.folder)
            if record is None:
                raise DataError(f"no {self.folder}/ record")
            if str(record.extra.get("object_status", "")) == BAD_QUALITY.code:
                raise DataError(f"{self.spec}: labelled '{BAD_QUALITY.value}'")
            if str(record.extra.get("review_status", "")) == "rejected":
                raise DataError(f"{self.spec}: rejected by a reviewer")
            pose, cad_index = record.pose, record.cad_index
        else:
            initial = dataset.read_optional(key, INITIAL)
            row = (self.rows or {}).get(str(key))
            if row is None:
                raise DataError(f"not in {self.spec}")
            try:
                pose, cad_index, _ = prediction_pose(
                    row, initial.pose.viewport if initial else DEFAULT_VIEWPORT,
                    initial.cad_index if initial else int(row["cad_index"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{self.spec}: bad row ({exc})") from None
        return {**pose.as_degrees(), "viewport": pose.viewport, "cad_index": int(cad_index)}


def stored_pose(values: dict[str, Any]) -> tuple[Pose, int]:
    """(Pose, CAD index) of a pose as ``PoseSource.pose`` gives it (and the store keeps it)."""
    return (Pose.from_degrees(**{n: float(values[n]) for n in POSE_NAMES},
                              viewport=float(values["viewport"])), int(values["cad_index"]))


# --- Rendering. ---


def _edges(dataset: Dataset, key: ObjectKey, values: dict[str, Any], width: int, height: int):
    """The visible edges (full-size bool mask, EDGE_WIDTH px) of a pose."""
    from pose6d.renderer import render

    pose, cad_index = stored_pose(values)
    edges = render(dataset.cad.mesh(key.category, cad_index), pose, width, height).full_edges
    thick = edges.copy()
    for dy in range(EDGE_WIDTH):
        for dx in range(EDGE_WIDTH):
            thick[dy:, dx:] |= edges[:height - dy, :width - dx]
    return thick


def crop_box(masks: Iterable[np.ndarray], bbox: Any, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the window around every mask and the dataset's box, with a margin;
    the same for both sides of a pair (a crop of its own would tell the poses apart by size)."""
    xs, ys = [], []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        if rows.size:
            xs += [int(cols.min()), int(cols.max()) + 1]
            ys += [int(rows.min()), int(rows.max()) + 1]
    if bbox is not None:
        b = np.asarray(bbox, dtype=float).reshape(-1)
        if b.size == 4 and np.isfinite(b).all():
            xs += [int(b[0]), int(np.ceil(b[2]))]
            ys += [int(b[1]), int(np.ceil(b[3]))]
    if not xs:
        return 0, 0, width, height
    x0, x1, y0, y1 = max(0, min(xs)), min(width, max(xs)), max(0, min(ys)), min(height, max(ys))
    pad = CROP_MARGIN * max(x1 - x0, y1 - y0, 1)

    def span(lo: int, hi: int, limit: int) -> tuple[int, int]:
        """[lo - pad, hi + pad], at least MIN_CROP long, moved (not cut) to fit the photo."""
        size = min(limit, max(MIN_CROP, int(np.ceil(hi - lo + 2 * pad))))
        start = int(round((lo + hi - size) / 2))
        start = min(max(0, start), limit - size)
        return start, start + size

    (x0, x1), (y0, y1) = span(x0, x1, width), span(y0, y1, height)
    return x0, y0, x1, y1


def render_pair(dataset: Dataset, key: ObjectKey, left: dict[str, Any],
                right: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The two pictures of a pair: the photo with each pose's visible edges, the same crop."""
    from pose6d.inout import read_image

    photo = read_image(dataset.image_path(key))
    height, width = photo.shape[:2]
    masks = [_edges(dataset, key, values, width, height) for values in (left, right)]
    initial = dataset.read_optional(key, INITIAL)
    x0, y0, x1, y1 = crop_box(masks, initial.bbox if initial else None, width, height)
    out = []
    for mask in masks:
        image = photo.copy()
        image[mask] = EDGE_COLOR
        out.append(image[y0:y1, x0:x1])
    return out[0], out[1]


# --- The project. ---


@dataclasses.dataclass
class CreateOptions:
    """What ``create`` does; see pose6d-evaluate create --help."""

    data_root: Path
    store_url: str
    title: str = DEFAULT_TITLE
    project_id: int | None = None
    a: str = "initial"
    b: str = "synced"
    categories: list[str] | None = None
    limit: int | None = None
    seed: int | None = None  # None: sides from the system's randomness
    re_ask: bool = False
    image_url_prefix: str | None = None
    batch_size: int = 500
    progress: bool = True


@dataclasses.dataclass
class CreateReport:
    project_id: int
    project_url: str
    steps: list[str] = dataclasses.field(default_factory=list)
    made: int = 0  # new pairs rendered
    imported: int = 0  # tasks imported (new pairs and pairs the project lacked)
    present: int = 0  # pairs already in the project
    rated: int = 0  # pairs left out: rated already
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"project {self.project_id}: {self.project_url}", *self.steps,
               f"pairs: {self.made} new, {self.imported} tasks imported, {self.present} already "
               f"in the project, {self.rated} rated already (not asked again), "
               f"{len(self.skipped)} objects skipped"]
        return out + [f"  skipped {key}: {why}" for key, why in self.skipped]


def left_is_a(seed: int | None, key: ObjectKey) -> bool:
    """The side of source A: per object from ``seed`` (reproducible), else at random."""
    if seed is None:
        return secrets.randbelow(2) == 0
    return random.Random(f"{seed}/{key}").random() < 0.5


def ensure_project(client: Any, title: str, project_id: int | None) -> tuple[Any, str]:
    """(the evaluation project, what happened): found, its config updated, or created."""
    config = labeling_config()
    project = find_project(client, title, project_id)
    if project is None:
        return sdk_call("creating the evaluation project", client.projects.create, title=title,
                        label_config=config, show_skip_button=True), "created"
    if (project.label_config or "").strip() != config.strip():
        sdk_call(f"updating the labeling config of project {project.id}", client.projects.update,
                 id=project.id, label_config=config)
        return project, "labeling config updated"
    return project, "found"


def project_pairs(client: Any, project_id: int) -> dict[str, int]:
    """{pair id: task id} of the project's tasks."""
    pages = sdk_call("listing the evaluation tasks", client.tasks.list, project=project_id,
                     include="id,data", page_size=LIST_PAGE)
    return {str(t.data.get(DATA_PAIR)): int(t.id) for t in pages
            if isinstance(t.data, dict) and t.data.get(DATA_PAIR)}


def evaluation_sources(store: QualityStore, title: str) -> tuple[str, str] | None:
    """(A, B) of the evaluation named ``title``, from its registered projects; None if new."""
    with store.transaction() as tx:
        for p in reversed(tx.projects(EVALUATION)):
            if p.settings.get("evaluation") == title:
                return str(p.settings["a"]), str(p.settings["b"])
    return None


def create(client: Any, options: CreateOptions, base_url: str) -> CreateReport:
    """Make or update the evaluation project (module docstring); AdminError on failure."""
    from tqdm import tqdm

    if options.a == options.b:
        raise AdminError(f"sources A and B are both {options.a!r}")
    dataset = Dataset.open(options.data_root)
    source_a, source_b = PoseSource.parse(options.a), PoseSource.parse(options.b)
    store = QualityStore(options.store_url)
    try:
        known = evaluation_sources(store, options.title)
        if known is not None and known != (options.a, options.b):
            raise AdminError(f"evaluation {options.title!r} compares A={known[0]} with "
                             f"B={known[1]}; give another --title for A={options.a}, "
                             f"B={options.b}")
        project, state = ensure_project(client, options.title, options.project_id)
        report = CreateReport(project.id, f"{base_url.rstrip('/')}/projects/{project.id}/data")
        report.steps.append(f"project {options.title!r}: {state}")
        settings = {"evaluation": options.title, "a": options.a, "b": options.b,
                    "data_root": str(dataset.root.resolve())}
        with store.transaction() as tx:  # before any task: the engine must know the project
            tx.register_project(project.id, EVALUATION, options.title, None, settings)
        prefix = options.image_url_prefix
        if prefix is None:
            prefix, state = ensure_local_storage(client, project.id, dataset.root)
            report.steps.append(f"images: {state}")
        present = project_pairs(client, project.id)
        with store.transaction() as tx:
            pairs = {p.object_key: p for p in tx.pairs(options.title)}
            rated = {r.pair_id for r in tx.ratings(options.title)}
        keys = sorted(source_a.keys(dataset, options.categories)
                      & source_b.keys(dataset, options.categories))
        bar = tqdm(total=len(keys) if options.limit is None else min(len(keys), options.limit),
                   desc="pairs", unit="obj", file=sys.stderr, disable=not options.progress)
        todo: list[Pair] = []
        taken = 0  # objects in the evaluation so far (bar.n stays 0 when the bar is off)
        try:
            for key in keys:
                if options.limit is not None and taken >= options.limit:
                    break
                pair = pairs.get(str(key))
                if pair is None:
                    try:
                        pair = _new_pair(dataset, store, options, key, source_a, source_b)
                    except (DataError, OSError, ValueError) as exc:
                        report.skipped.append((str(key), str(exc)))
                        continue
                    report.made += 1
                taken += 1
                bar.update()
                if pair.pair_id in present:
                    report.present += 1
                elif pair.pair_id in rated and not options.re_ask:
                    report.rated += 1
                else:
                    try:
                        _ensure_renders(dataset, pair)
                    except (DataError, OSError, ValueError) as exc:
                        report.skipped.append((str(key), str(exc)))
                        continue
                    todo.append(pair)
        finally:
            bar.close()
        tasks = ({"data": {DATA_PAIR: p.pair_id, DATA_LEFT: image_url(p.left_image, prefix),
                           DATA_RIGHT: image_url(p.right_image, prefix)}} for p in todo)
        report.imported = import_batches(client, project.id, tasks, options.batch_size)
        task_ids = project_pairs(client, project.id)
        with store.transaction() as tx:  # which task shows each pair now
            for pair in tx.pairs(options.title):
                if pair.pair_id in task_ids and (pair.project_id, pair.task_id) != \
                        (project.id, task_ids[pair.pair_id]):
                    tx.set_pair_task(pair.pair_id, project.id, task_ids[pair.pair_id])
        return report
    finally:
        store.close()


def _ensure_renders(dataset: Dataset, pair: Pair) -> None:
    """Draw a stored pair's pictures again if their files went missing (same poses, same
    sides, same names: nothing of the pair changes)."""
    from pose6d.inout import write_image

    paths = [dataset.root / pair.left_image, dataset.root / pair.right_image]
    if all(p.is_file() for p in paths):
        return
    images = render_pair(dataset, ObjectKey.parse(pair.object_key), pair.left_pose,
                         pair.right_pose)
    for path, image in zip(paths, images):
        write_image(path, image, **PNG_OPTIONS)


def _new_pair(dataset: Dataset, store: QualityStore, options: CreateOptions, key: ObjectKey,
              source_a: PoseSource, source_b: PoseSource) -> Pair:
    """Render and store a new pair of ``key`` (the renders first: a pair in the store always
    has its pictures). Returns the stored pair."""
    from pose6d.inout import write_image

    pose_a, pose_b = source_a.pose(dataset, key), source_b.pose(dataset, key)
    a_left = left_is_a(options.seed, key)
    left, right = (pose_a, pose_b) if a_left else (pose_b, pose_a)
    images = render_pair(dataset, key, left, right)
    names = []
    for image in images:
        name = f"{RENDERS}/{secrets.token_hex(16)}.png"
        write_image(dataset.root / name, image, **PNG_OPTIONS)
        names.append(name)
    pair = Pair(pair_id=secrets.token_hex(16), evaluation=options.title, object_key=str(key),
                left_source=options.a if a_left else options.b,
                right_source=options.b if a_left else options.a,
                left_pose=left, right_pose=right, left_image=names[0], right_image=names[1])
    with store.transaction() as tx:
        return tx.add_pair(pair)
