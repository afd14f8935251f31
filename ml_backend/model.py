"""The model Label Studio talks to, shaped like a label-studio-ml model: setup / predict / fit."""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from label_sync.engine import SyncService
from label_sync.records import ANNOTATOR_EMAIL, POSE_RENDERED
from label_sync.store import default_store_url
from pose6d.cad_library import CadError, CadLibrary
from pose6d.camera import InvalidPoseError, Pose
from pose6d.dataset import SYNCED, Dataset, ObjectKey
from pose6d.errors import DataError, StoreFailure
from pose6d.inout import image_size
from pose6d import labeling
from pose6d.labeling import box_region, choice_result, command_result, pose_results, shown_pose
from pose6d.labeling_config import missing_tags
from pose6d.tasks import REVIEW_NOTE, SENT_BACK_FOR, TaskError, task_object_key

from ml_backend.commands import INFO_MARK
from ml_backend.overlay_regions import (DEFAULT_STYLE, neighbour_numbers_region,
                                        neighbours_region, overlay_regions, pins_region)
from ml_backend.pose_source import InitialPose, TaskContext, make_pose_source
from ml_backend.refinement import Refinement
from ml_backend.refinement_state import RefinementStore
from ml_backend.settings import Settings

log = logging.getLogger("ml_backend")

RETRY_FAILED_S = 60.0
NO_PREFILL_FIT = ("--prefill-fit needs auto-fit, which needs OpenCV: pip install "
                  "opencv-python-headless (the Docker image has it)")
EVIDENCE_CACHE = 16  # photos kept ready for auto-fit (a few MB each), per worker
PHOTO_INDEX_S = 60.0  # how long a category's photo -> objects listing is reused (neighbours)


class Pose6DModel:
    """Prefills each object's pose, renders the mesh overlay, refines it interactively and syncs
    submitted annotations back to the dataset."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.setup()

    def setup(self) -> None:
        """Open the dataset and the pose source (once per process); the stores open lazily."""
        self.dataset = Dataset(self.settings.data_root)
        self.cad: CadLibrary = self.dataset.cad
        self._image_size = functools.lru_cache(maxsize=65536)(self._read_image_size)
        self._evidence = functools.lru_cache(maxsize=EVIDENCE_CACHE)(self._read_evidence)
        self._photo_index: dict[str, tuple[int, dict[str, list[int]]]] = {}
        if self.settings.prefill_fit and not autofit_installed():
            raise DataError(NO_PREFILL_FIT)
        self.pose_source = make_pose_source(
            self.settings.pose_source, self.dataset,
            fit_evidence=self.photo_evidence if self.settings.prefill_fit else None)
        self.model_version = f"{self.settings.model_version}:{self.pose_source.name}"
        self._sync: SyncService | None = None
        self._refinement_store: RefinementStore | None = None
        self._open_lock = threading.Lock()
        self._last_retry = time.monotonic()
        self.refinement = Refinement(self, self._open_refinement_store)

    @property
    def sync(self) -> SyncService:
        """The sync service, opened lazily so that /health and /predict never wait for it."""
        if self._sync is None:
            with self._open_lock:  # gunicorn threads: one service (one store) per process
                if self._sync is None:
                    self._sync = SyncService(self.dataset, self.settings.sync_store or None,
                                             self.settings.require_qualification)
        return self._sync

    def _open_refinement_store(self) -> RefinementStore:
        if self._refinement_store is None:
            with self._open_lock:
                if self._refinement_store is None:
                    # The sync's store (a table of its own): one store to run and back up.
                    self._refinement_store = RefinementStore(
                        default_store_url(self.dataset.root, self.settings.sync_store or None))
        return self._refinement_store

    # --- label-studio-ml interface ---

    def check_config(self, label_config: str) -> list[str]:
        """Names of the labeling config's tags this backend needs but does not find."""
        return missing_tags(label_config)

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs) -> list[Any]:
        """One entry per task: a prediction dict, or [] for a task that failed (logged)."""
        if context is not None:
            try:
                first = self.refinement.handle(tasks[0], context, kwargs.get("label_config"))
            except StoreFailure:
                raise  # 503: the refinement store is down, the annotator may try again
            except Exception:  # noqa: BLE001 - a poison task: nothing changes, never a 500
                log.exception("interactive predict: task %s cannot be refined",
                              str(tasks[0].get("id"))[:40])
                first = {"result": [], "model_version": self.model_version}
            return [first] + [[] for _ in tasks[1:]]
        out: list[Any] = []
        for task in tasks:
            try:
                out.append(self.predict_task(task))
            except TaskError as exc:
                log.warning("predict: task %s skipped: %s", str(task.get("id"))[:40], exc)
                out.append([])
            except Exception:  # noqa: BLE001 - one poison task must not fail the batch
                log.exception("predict: task %s failed", str(task.get("id"))[:40])
                out.append([])
        return out

    def fit(self, event: str, data: dict, **kwargs) -> dict:
        """Label Studio's webhook events: sync annotations back to the dataset.

        A submitted annotation is marked with whether its pose was drawn for the annotator
        (``POSE_RENDERED``, journaled with the event) and ends its live-refinement chain.
        Label Studio never resends a webhook, so events whose write failed earlier (disk full,
        read-only dataset) are retried here, at most every RETRY_FAILED_S.
        """
        annotation, task = data.get("annotation"), data.get("task")
        single = event in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") \
            and isinstance(annotation, dict) and isinstance(task, dict)
        if single:  # what the refinement knows of it, journaled with the event
            try:
                shown, email = self.refinement.submitted(task, annotation)
                known = {POSE_RENDERED: shown, ANNOTATOR_EMAIL: email}
            except StoreFailure:
                raise  # 503: Label Studio's webhook is not resent, but reconcile repairs it
            except Exception:  # noqa: BLE001 - a poison task: the sync journals and refuses it
                log.exception("webhook: what was shown for task %s is unknown",
                              str(task.get("id"))[:40])
                known = {}
            data = dict(data, annotation=dict(annotation, **{k: v for k, v in known.items()
                                                             if v is not None}))
        try:
            return self.sync.handle_event(dict(data, action=event))
        finally:
            task_id = _task_id_of(data)
            if single and task_id is not None:
                try:
                    self.refinement.forget(task_id, annotation)
                except Exception:  # noqa: BLE001 - a chain left behind only keeps its row
                    log.exception("webhook: the refinement chain of task %s was not ended",
                                  str(task_id)[:40])
            self._retry_failed_if_due()

    def _retry_failed_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_retry < RETRY_FAILED_S:
            return
        self._last_retry = now
        try:
            retried = self.sync.retry_failed()
        except Exception:  # noqa: BLE001 - the store itself is down: the next event tries again
            log.exception("retrying failed sync events")
            return
        if retried:
            log.info("sync: %d earlier failed events applied now", retried)

    # --- what refinement needs (ml_backend.refinement.RefinementHost) ---

    def _read_image_size(self, key: ObjectKey) -> tuple[int, int]:
        return image_size(self.dataset.image_path(key), for_labelling=True)

    def task_context(self, task: dict) -> TaskContext:
        """The task's object, initial pose and photo size; TaskError when unusable. A task a
        reviewer sent back starts at the object's synced pose (the one sent back, to be
        corrected), not at the model's again."""
        key = task_object_key(task)
        try:
            initial = self.pose_source.initial(key)
            data = task.get("data") if isinstance(task, dict) else None
            if isinstance(data, dict) and data.get(SENT_BACK_FOR) is not None:
                initial = self._sent_back_start(key, initial)
            width, height = self._image_size(key)
            self.cad.path(key.category, initial.cad_index)
        except (DataError, InvalidPoseError) as exc:
            raise TaskError(str(exc)) from None
        return TaskContext(key, initial, width, height)

    def _sent_back_start(self, key: ObjectKey, initial: InitialPose) -> InitialPose:
        """The synced pose of a sent-back object; ``initial`` when there is none or it cannot
        be read or drawn (the annotator then starts over, as on a new task)."""
        try:
            record = self.dataset.read_optional(key, SYNCED)
            if record is not None:
                self.cad.path(key.category, record.cad_index)
                return InitialPose(record.pose, record.cad_index, initial.score, "sent-back")
        except (DataError, InvalidPoseError) as exc:  # CadError is a DataError
            log.warning("sent-back task of %s starts at the initial pose: %s", key, exc)
        return initial

    def pose_prediction(self, key: ObjectKey, pose: Pose, cad_index: int, width: int, height: int,
                        bbox=None, extra: list[dict] | None = None,
                        style: str = DEFAULT_STYLE, pins: list | None = None) -> list[dict]:
        """Result list for a pose: six Numbers, CAD choice, box and the overlay at ``shown_pose``
        in the overlay ``style``; the photo's other objects faintly (when it has any) and the
        ``pins`` ([(number, model pixel, photo pixel or None)], drawn when not None)."""
        shown = shown_pose(pose)
        try:
            mesh = self.cad.mesh(key.category, cad_index)
        except CadError as exc:
            raise TaskError(str(exc)) from None
        regions, _ = overlay_regions(mesh, shown, width, height, self.settings.edge_width, style)
        others, numbers = [], []
        for other, other_pose, other_cad in self.neighbours(key):
            numbers.append((other.k, (other_pose.px, other_pose.py)))  # its centre: copy k
            try:  # a neighbour that cannot be drawn is left out, the object still is
                others.append((self.cad.mesh(other.category, other_cad), other_pose))
            except CadError:
                log.warning("predict %s: neighbour %s not drawn (CAD model %s)", key, other,
                            other_cad)
        if others:
            regions.append(neighbours_region(others, width, height))
        if numbers:
            regions.append(neighbour_numbers_region(numbers, width, height))
        if pins is not None:
            regions.append(pins_region(pins, width, height))
        results = pose_results(shown) + [choice_result(labeling.CAD, str(cad_index))] + regions
        if bbox is not None:
            results.append(box_region(bbox, width, height))
        return results + (extra or [])

    def neighbours(self, key: ObjectKey) -> list[tuple[ObjectKey, Pose, int]]:
        """The photo's other objects (same category and photo): (key, pose, CAD index), the
        synced record's when there is one, else the pose their own task opens at (the pose
        source's; with --prefill-fit a kept fit, none run here)."""
        out = []
        initial = getattr(self.pose_source, "known", self.pose_source.initial)
        for k in self._photo_objects(key.category).get(key.name, ()):
            try:
                other = ObjectKey(key.category, key.name, k)
                if other == key:
                    continue
                synced = self.dataset.read_optional(other, SYNCED)
                found = synced if synced is not None else initial(other)
                out.append((other, found.pose, found.cad_index))
            except Exception as exc:  # any pose source's failure: the object is drawn alone
                log.warning("neighbour %s of %s not drawn: %s", k, key, exc)
                continue
        return out

    def _photo_objects(self, category: str) -> dict[str, list[int]]:
        """{photo name: [k, ...]} of a category's objects: one folder listing per PHOTO_INDEX_S
        and category (one entry per category is kept), not one per /predict."""
        period = int(time.monotonic() // PHOTO_INDEX_S)
        found = self._photo_index.get(category)
        if found is None or found[0] != period:
            index: dict[str, list[int]] = {}
            for key in self.dataset.objects(categories=[category]):
                index.setdefault(key.name, []).append(key.k)
            found = self._photo_index[category] = (period, index)
        return found[1]

    def labels_refused(self, user: str | None, task: dict) -> str | None:
        """Why this annotator gets no refinement on this task (--require-qualification)."""
        if not self.settings.require_qualification:
            return None
        project = task.get("project")
        return self.sync.labels_refused(user, project if isinstance(project, int) else None)

    def photo_evidence(self, key: ObjectKey):
        """The object's photo and box for auto-fit, cached per object (the edges and the
        foreground are computed once per photo)."""
        return self._evidence(key)

    def _read_evidence(self, key: ObjectKey):
        from pose6d.fitting.evidence import ImageEvidence
        from pose6d.inout import read_image

        return ImageEvidence(read_image(self.dataset.image_path(key)), self.dataset.read(key).bbox)

    def predict_task(self, task: dict) -> dict:
        t0 = time.perf_counter()
        key, initial, width, height = self.task_context(task)
        data = task.get("data") or {}
        record_bbox = data.get("bbox")
        note = review_note_text(data.get(REVIEW_NOTE))  # a task a reviewer sent back: why
        extra = [command_result(note)] if note else None
        results = self.pose_prediction(key, initial.pose, initial.cad_index, width, height,
                                       bbox=record_bbox if _is_box(record_bbox) else None,
                                       extra=extra)
        log.debug("predict %s in %.1f ms", key, (time.perf_counter() - t0) * 1000)
        return {"result": results, "score": initial.score, "model_version": self.model_version}

    def close(self) -> None:
        for store in (self._sync, self._refinement_store):
            if store is not None:
                store.close()


def review_note_text(note: Any) -> str | None:
    """A sent-back task's note for the command box, every line marked as the backend's (an
    unmarked line there would run as a command with the annotator's next Enter); None when
    there is no note."""
    lines = [line.strip() for line in note[:500].splitlines() if line.strip()] \
        if isinstance(note, str) else []
    return "\n".join(f"{INFO_MARK} " + ("review note: " if i == 0 else "") + line
                     for i, line in enumerate(lines)) or None


def autofit_installed() -> bool:
    """Whether pose6d.fitting.fit can be imported here (it needs OpenCV, an optional dependency)."""
    try:
        import pose6d.fitting.fit  # noqa: F401
    except ImportError:
        return False
    return True


def _task_id_of(data: dict) -> str | None:
    """The task id of a webhook payload (task.id, else annotation.task), as text."""
    task = data.get("task") if isinstance(data, dict) else None
    annotation = data.get("annotation") if isinstance(data, dict) else None
    for value in ((task or {}).get("id") if isinstance(task, dict) else None,
                  (annotation or {}).get("task") if isinstance(annotation, dict) else None):
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return str(value)[:40]
    return None


def _is_box(value) -> bool:
    try:
        return len(value) == 4 and all(float(v) == float(v) for v in value)
    except (TypeError, ValueError):
        return False
