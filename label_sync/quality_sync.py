"""Quality control in the sync engine: events of quality-control projects routed by the
project's kind (label_sync.quality_store), the qualification gate, and the reviewer's decision
added to a synced record. ``QualityRouting`` is a part of ``label_sync.engine.SyncService``."""
from __future__ import annotations

from typing import Any

from pose6d.dataset import ObjectKey
from label_sync.outcome import Outcome
from label_sync.quality_store import (EVALUATION, QUALIFICATION, REQUIRE_QUALIFICATION,
                                      QualityTx, Review)
from label_sync.evaluation import rating_from_annotation
from label_sync.records import ANNOTATOR_EMAIL, SyncRejected, annotator_of, ls_id
from label_sync.review import review_from_annotation
from label_sync.store import Version

# What a synced record's review_status says for each decision (docs/data_formats.md).
REVIEW_STATUS = {"accept": "reviewed", "reject": "rejected"}


class QualityRouting:
    """SyncService's quality-control steps (it provides store and _sync_object)."""

    def _project_kind(self, project_id: int) -> str | None:
        """The quality-control kind of a project, None for a labelling project."""
        if project_id < 0:
            return None
        with self.store.transaction() as tx:
            found = QualityTx(tx.cur, tx.dialect).project(project_id)
        return found.kind if found else None

    def _qualification_rule(self, wanted: bool | None) -> bool:
        """Keep ``wanted`` in the store when given; the store's rule otherwise (off if unset)."""
        with self.store.transaction() as tx:
            quality = QualityTx(tx.cur, tx.dialect)
            if wanted is None:
                return bool(quality.setting(REQUIRE_QUALIFICATION))
            if quality.setting(REQUIRE_QUALIFICATION) != wanted:
                quality.set_setting(REQUIRE_QUALIFICATION, wanted)
        return wanted

    def held_reason(self, annotation: dict) -> str | None:
        """Why the sync would hold this annotation (None: it would not)."""
        if not self.require_qualification or not isinstance(annotation, dict) \
                or annotation.get("was_cancelled"):
            return None
        project = ls_id(annotation.get("project"))
        if project >= 0 and self._project_kind(project) is not None:
            return None
        return self._not_qualified(annotation)

    def qualification_state(self, names: set[str]) -> str:
        """"passed", "failed" or "not taken": the qualification of the annotator known by any
        of ``names`` (Label Studio user id as text, email)."""
        with self.store.transaction() as tx:
            found = [QualityTx(tx.cur, tx.dialect).qualification(n) for n in sorted(names) if n]
        if any(q is not None and q.passed for q in found):
            return "passed"
        return "failed" if any(q is not None for q in found) else "not taken"

    def labels_refused(self, user: str | None, project_id: int | None) -> str | None:
        """Why the backend does not prefill or refine for ``user`` on a task of ``project_id``
        (None: it does): only with require_qualification, for a labelling project (the
        qualification project is the test itself) and a user who has not passed."""
        if not self.require_qualification or not user:
            return None
        if project_id is not None and self._project_kind(project_id) is not None:
            return None
        state = self.qualification_state({user})
        if state == "passed":
            return None
        return (f"{user} has not passed the qualification test yet ({state}): this project "
                "labels only with qualified annotators, so the pose is not refined and what you "
                "submit is kept but not synced until you pass. Ask your admin for the "
                "qualification project (pose6d-qualify).")

    def _not_qualified(self, annotation: dict) -> str | None:
        """Why the annotation's author may not label yet (None: qualified)."""
        names = {annotator_of(annotation), str(ls_id(annotation.get("completed_by")))}
        if isinstance(annotation.get(ANNOTATOR_EMAIL), str):
            names.add(annotation[ANNOTATOR_EMAIL])
        names.discard("-1")
        state = self.qualification_state(names)
        if state == "passed":
            return None
        return (f"not qualified: annotator {annotator_of(annotation)} has not passed the "
                f"qualification test ({state}); held, applied once they pass (pose6d-qualify score)")

    def _upsert_qc(self, annotation: dict, task: dict, project_id: int, kind: str) -> Outcome:
        """An annotation of a quality-control project (see the module docstring)."""
        if kind == QUALIFICATION:
            return Outcome("ignored", f"project {project_id} is a qualification project: its "
                                      "annotations are test answers, scored by pose6d-qualify, "
                                      "never dataset records")
        if kind == EVALUATION:
            try:
                rating = rating_from_annotation(annotation, task, project_id)
            except SyncRejected as exc:
                return Outcome("rejected", exc.reason)
            if rating is None:
                return Outcome("ignored", "no rating (the task was skipped)")
            with self.store.transaction() as tx:
                kept = QualityTx(tx.cur, tx.dialect).upsert_rating(rating)
            return Outcome("applied" if kept else "duplicate")
        try:
            review = review_from_annotation(annotation, task, project_id)
        except SyncRejected as exc:
            return Outcome("rejected", exc.reason)
        if review is None:
            return Outcome("ignored", "no review decision (the task was skipped)")
        return self._apply_review(review)

    def _apply_review(self, review: Review) -> Outcome:
        with self.store.transaction() as tx:
            tx.lock_objects([review.object_key])
            kept = QualityTx(tx.cur, tx.dialect).upsert_review(review)
            written, removed = self._sync_object(tx, ObjectKey.parse(review.object_key))
        return Outcome("applied" if kept else "duplicate", None, written, removed)

    def _delete_qc(self, annotation_id: int, project_id: int, kind: str) -> Outcome:
        """A deleted annotation of a quality-control project: a rating or a review stops
        counting (its row is kept, marked deleted)."""
        if kind == QUALIFICATION:
            return Outcome("ignored", "qualification answers are read from the project")
        with self.store.transaction() as tx:
            quality = QualityTx(tx.cur, tx.dialect)
            if kind == EVALUATION:
                quality.delete_rating(annotation_id)
                return Outcome("applied")
            key = quality.delete_review(annotation_id)
            if key is None:
                return Outcome("ignored", f"review annotation {annotation_id} was never synced")
            tx.lock_objects([key])
            written, removed = self._sync_object(tx, ObjectKey.parse(key))
        return Outcome("applied", None, written, removed)


def with_review(winner: Version, review: Review | None) -> dict[str, Any]:
    """The winner's record fields plus its reviewer's decision, when the review saw this
    version (an annotation edited after its review is not the pose the reviewer judged)."""
    if review is None or (review.reviewed_us is not None and winner.updated_us > review.reviewed_us):
        return winner.record
    return dict(winner.record, review_status=REVIEW_STATUS.get(review.decision, review.decision),
                review_reasons="; ".join(review.reasons), review_comment=review.comment,
                reviewer=review.reviewer or "unknown",
                review_annotation_id=review.review_annotation_id)

