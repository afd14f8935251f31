"""Quality control's tables in the sync store: which Label Studio projects are quality-control
projects (qualification, evaluation, review), each annotator's qualification result, the blind
A/B pairs with their ratings, and the reviewers' decisions.

Label Studio Community has no reviewer role, ground truth scoring or review stream
(../docs/quality_control.md), so these facts live here, beside the synced annotations, in the
same store (SQLite or PostgreSQL): one store to run and back up. The sync engine reads the
project kinds (a qualification or evaluation project's annotations never become dataset
records), the qualification results (``--require-qualification``) and the review decisions (a
synced record says reviewed / rejected); the admin commands (ls_admin.qualify, .evaluate,
.review) write them.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from label_sync.database import Database, Tx, canonical_json, utc_now

# The kinds of quality-control project (pose6d_qc_project.kind). A project not listed is a
# labelling project: its annotations are synced to the dataset.
QUALIFICATION, EVALUATION, REVIEW = "qualification", "evaluation", "review"
PROJECT_KINDS = (QUALIFICATION, EVALUATION, REVIEW)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pose6d_qc_project (
        project_id BIGINT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL,
        main_project_id BIGINT, settings TEXT NOT NULL, created_at TEXT NOT NULL)""",
    # One row per annotator (Label Studio user id as text): the newest scoring.
    """CREATE TABLE IF NOT EXISTS pose6d_qc_qualification (
        annotator TEXT PRIMARY KEY, email TEXT, passed INTEGER NOT NULL, figures TEXT NOT NULL,
        project_id BIGINT, scored_at TEXT NOT NULL)""",
    # A blind A/B pair of one evaluation (its name): which pose source is drawn left, the poses
    # drawn (JSON) and the two render files (opaque names below the data root). pair_id is
    # opaque (random): with the render names, the only names its evaluation task carries.
    """CREATE TABLE IF NOT EXISTS pose6d_qc_pair (
        pair_id TEXT PRIMARY KEY, evaluation TEXT NOT NULL, object_key TEXT NOT NULL,
        left_source TEXT NOT NULL, right_source TEXT NOT NULL, left_pose TEXT NOT NULL,
        right_pose TEXT NOT NULL, left_image TEXT NOT NULL, right_image TEXT NOT NULL,
        project_id BIGINT, task_id BIGINT, created_at TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS pose6d_qc_pair_object ON pose6d_qc_pair "
    "(evaluation, object_key)",
    # A rating of a pair (one per evaluation annotation; the newest version of it; a deleted
    # annotation leaves a tombstone, so a replayed older event cannot bring it back).
    # choice: "left", "right" or "same" (label_sync.evaluation).
    """CREATE TABLE IF NOT EXISTS pose6d_qc_rating (
        annotation_id BIGINT PRIMARY KEY, pair_id TEXT NOT NULL, rater TEXT,
        choice TEXT NOT NULL, updated_us BIGINT NOT NULL, project_id BIGINT, task_id BIGINT,
        deleted INTEGER NOT NULL DEFAULT 0, received_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pose6d_qc_rating_pair ON pose6d_qc_rating (pair_id)",
    # A reviewer's decision on one submitted annotation of a labelling project (the newest
    # version of the review annotation wins; a deleted review stops counting).
    """CREATE TABLE IF NOT EXISTS pose6d_qc_review (
        review_annotation_id BIGINT PRIMARY KEY, updated_us BIGINT NOT NULL,
        object_key TEXT NOT NULL, annotation_id BIGINT NOT NULL, decision TEXT NOT NULL,
        reasons TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT, project_id BIGINT,
        deleted INTEGER NOT NULL DEFAULT 0, sent_back_task_id BIGINT, reviewed_us BIGINT,
        received_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pose6d_qc_review_annotation ON pose6d_qc_review (annotation_id)",
    # Settings every process of the store must agree on (REQUIRE_QUALIFICATION: the backend's
    # --require-qualification as it last started, which reconcile then follows too).
    """CREATE TABLE IF NOT EXISTS pose6d_qc_setting (
        name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)""",
)
REQUIRE_QUALIFICATION = "require_qualification"


@dataclasses.dataclass(frozen=True)
class QcProject:
    """A quality-control project: its kind, the labelling project it serves, its settings."""

    project_id: int
    kind: str
    title: str
    main_project_id: int | None
    settings: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Qualification:
    """One annotator's newest qualification result; figures: the scoring's numbers."""

    annotator: str
    email: str | None
    passed: bool
    figures: dict[str, Any]
    project_id: int | None
    scored_at: str


@dataclasses.dataclass(frozen=True)
class Review:
    """A reviewer's decision on annotation ``annotation_id`` of ``object_key``.

    decision: "accept" or "reject"; reasons: the reasons chosen (labels as shown).
    reviewed_us: updated_at (microseconds since the epoch) of the annotation version the
    reviewer saw; a later edit of that annotation is not covered by the review (None: any).
    """

    review_annotation_id: int
    updated_us: int
    object_key: str
    annotation_id: int
    decision: str
    reasons: tuple[str, ...]
    comment: str
    reviewer: str | None
    project_id: int | None
    deleted: bool = False
    sent_back_task_id: int | None = None
    reviewed_us: int | None = None

    @classmethod
    def from_row(cls, r: tuple) -> "Review":
        return cls(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], tuple(json.loads(r[5])), r[6],
                   r[7], None if r[8] is None else int(r[8]), bool(r[9]),
                   None if r[10] is None else int(r[10]), None if r[11] is None else int(r[11]))


@dataclasses.dataclass(frozen=True)
class Pair:
    """One object of a blind A/B evaluation: the source drawn left and right (their specs, e.g.
    "initial", "synced", "file:preds.jsonl"), the poses drawn ({pose values in degrees,
    viewport, cad_index}) and the render files (paths below the data root)."""

    pair_id: str
    evaluation: str
    object_key: str
    left_source: str
    right_source: str
    left_pose: dict[str, Any]
    right_pose: dict[str, Any]
    left_image: str
    right_image: str
    project_id: int | None = None
    task_id: int | None = None

    @classmethod
    def from_row(cls, r: tuple) -> "Pair":
        return cls(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7], r[8],
                   None if r[9] is None else int(r[9]), None if r[10] is None else int(r[10]))


PAIR_COLUMNS = ("pair_id, evaluation, object_key, left_source, right_source, left_pose, "
                "right_pose, left_image, right_image, project_id, task_id")


@dataclasses.dataclass(frozen=True)
class Rating:
    """One evaluation annotation (its newest version): ``choice`` "left" / "right" / "same"."""

    annotation_id: int
    pair_id: str
    rater: str | None
    choice: str
    updated_us: int
    project_id: int | None = None
    task_id: int | None = None

    @classmethod
    def from_row(cls, r: tuple) -> "Rating":
        return cls(int(r[0]), r[1], r[2], r[3], int(r[4]), None if r[5] is None else int(r[5]),
                   None if r[6] is None else int(r[6]))


RATING_COLUMNS = "annotation_id, pair_id, rater, choice, updated_us, project_id, task_id"


REVIEW_COLUMNS = ("review_annotation_id, updated_us, object_key, annotation_id, decision, "
                  "reasons, comment, reviewer, project_id, deleted, sent_back_task_id, reviewed_us")


class QualityTx(Tx):
    """Quality control's queries inside one transaction."""

    # --- projects ---

    def register_project(self, project_id: int, kind: str, title: str,
                         main_project_id: int | None, settings: dict[str, Any]) -> None:
        """Record (or update) a quality-control project."""
        if kind not in PROJECT_KINDS:
            raise ValueError(f"unknown quality-control project kind {kind!r}")
        self.run("INSERT INTO pose6d_qc_project (project_id, kind, title, main_project_id, "
                 "settings, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id) DO "
                 "UPDATE SET kind = excluded.kind, title = excluded.title, main_project_id = "
                 "excluded.main_project_id, settings = excluded.settings",
                 (project_id, kind, title, main_project_id, canonical_json(settings), utc_now()))

    def project(self, project_id: int) -> QcProject | None:
        rows = self.run("SELECT project_id, kind, title, main_project_id, settings FROM "
                        "pose6d_qc_project WHERE project_id = ?", (project_id,))
        return _project(rows[0]) if rows else None

    def projects(self, kind: str | None = None) -> list[QcProject]:
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        return [_project(r) for r in self.run(
            "SELECT project_id, kind, title, main_project_id, settings FROM pose6d_qc_project "
            f"{where} ORDER BY project_id", params)]

    # --- settings ---

    def setting(self, name: str) -> Any:
        rows = self.run("SELECT value FROM pose6d_qc_setting WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def set_setting(self, name: str, value: Any) -> None:
        self.run("INSERT INTO pose6d_qc_setting (name, value, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = "
                 "excluded.updated_at", (name, json.dumps(value), utc_now()))

    # --- qualification ---

    def set_qualification(self, q: Qualification) -> None:
        self.run("INSERT INTO pose6d_qc_qualification (annotator, email, passed, figures, "
                 "project_id, scored_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (annotator) DO "
                 "UPDATE SET email = excluded.email, passed = excluded.passed, figures = "
                 "excluded.figures, project_id = excluded.project_id, scored_at = excluded.scored_at",
                 (q.annotator, q.email, int(q.passed), canonical_json(q.figures), q.project_id,
                  q.scored_at))

    def qualification(self, annotator: str) -> Qualification | None:
        rows = self.run("SELECT annotator, email, passed, figures, project_id, scored_at FROM "
                        "pose6d_qc_qualification WHERE annotator = ? OR email = ?",
                        (annotator, annotator))
        return _qualification(rows[0]) if rows else None

    def qualifications(self) -> list[Qualification]:
        return [_qualification(r) for r in self.run(
            "SELECT annotator, email, passed, figures, project_id, scored_at FROM "
            "pose6d_qc_qualification ORDER BY annotator")]

    # --- blind A/B evaluation: pairs and ratings ---

    def add_pair(self, pair: Pair) -> Pair:
        """Store a new pair; the one already stored for its (evaluation, object) wins (a pair
        is never re-randomised). Returns the pair now stored."""
        self.run(f"INSERT INTO pose6d_qc_pair ({PAIR_COLUMNS}, created_at) VALUES "
                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (evaluation, object_key) "
                 "DO NOTHING",
                 (pair.pair_id, pair.evaluation, pair.object_key, pair.left_source,
                  pair.right_source, canonical_json(pair.left_pose),
                  canonical_json(pair.right_pose), pair.left_image, pair.right_image,
                  pair.project_id, pair.task_id, utc_now()))
        rows = self.run(f"SELECT {PAIR_COLUMNS} FROM pose6d_qc_pair WHERE evaluation = ? AND "
                        "object_key = ?", (pair.evaluation, pair.object_key))
        return Pair.from_row(rows[0])

    def pair(self, pair_id: str) -> Pair | None:
        rows = self.run(f"SELECT {PAIR_COLUMNS} FROM pose6d_qc_pair WHERE pair_id = ?",
                        (pair_id,))
        return Pair.from_row(rows[0]) if rows else None

    def pairs(self, evaluation: str | None = None) -> list[Pair]:
        """Every pair (of one evaluation), by object key."""
        where, params = ("WHERE evaluation = ?", (evaluation,)) if evaluation else ("", ())
        return [Pair.from_row(r) for r in self.run(
            f"SELECT {PAIR_COLUMNS} FROM pose6d_qc_pair {where} ORDER BY evaluation, object_key",
            params)]

    def set_pair_task(self, pair_id: str, project_id: int, task_id: int) -> None:
        """The evaluation task that shows the pair now (a re-created project has new ones)."""
        self.run("UPDATE pose6d_qc_pair SET project_id = ?, task_id = ? WHERE pair_id = ?",
                 (project_id, task_id, pair_id))

    def upsert_rating(self, rating: Rating) -> bool:
        """Keep the newest version of an evaluation annotation; True if this one is now kept.
        An older or equal version (a replay) and a deleted annotation change nothing."""
        rows = self.run("SELECT updated_us, deleted FROM pose6d_qc_rating WHERE annotation_id = ?",
                        (rating.annotation_id,))
        if rows and (int(rows[0][0]) >= rating.updated_us or rows[0][1]):
            return False
        self.run("DELETE FROM pose6d_qc_rating WHERE annotation_id = ?", (rating.annotation_id,))
        self.run(f"INSERT INTO pose6d_qc_rating ({RATING_COLUMNS}, deleted, received_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                 (rating.annotation_id, rating.pair_id, rating.rater, rating.choice,
                  rating.updated_us, rating.project_id, rating.task_id, utc_now()))
        return True

    def delete_rating(self, annotation_id: int) -> bool:
        """The evaluation annotation was deleted: its rating stops counting (a tombstone stays,
        so a replayed event cannot bring it back). True if a live rating was deleted."""
        rows = self.run("SELECT deleted FROM pose6d_qc_rating WHERE annotation_id = ?",
                        (annotation_id,))
        if not rows:
            self.run(f"INSERT INTO pose6d_qc_rating ({RATING_COLUMNS}, deleted, received_at) "
                     "VALUES (?, '', NULL, '', 0, NULL, NULL, 1, ?)", (annotation_id, utc_now()))
            return False
        self.run("UPDATE pose6d_qc_rating SET deleted = 1 WHERE annotation_id = ?",
                 (annotation_id,))
        return not rows[0][0]

    def ratings(self, evaluation: str | None = None, project_id: int | None = None) -> list[Rating]:
        """Live ratings (of one evaluation's pairs; of one project), by annotation id."""
        where, params = ["r.deleted = 0"], []
        if evaluation:
            where.append("p.evaluation = ?")
            params.append(evaluation)
        if project_id is not None:
            where.append("r.project_id = ?")
            params.append(project_id)
        columns = ", ".join("r." + c.strip() for c in RATING_COLUMNS.split(","))
        return [Rating.from_row(r) for r in self.run(
            f"SELECT {columns} FROM pose6d_qc_rating r JOIN pose6d_qc_pair p ON p.pair_id = "
            f"r.pair_id WHERE {' AND '.join(where)} ORDER BY r.annotation_id", tuple(params))]

    # --- reviews ---

    def upsert_review(self, review: Review) -> bool:
        """Keep the newest version of a review annotation; True if this one is now kept."""
        rows = self.run("SELECT updated_us, deleted, sent_back_task_id FROM pose6d_qc_review "
                        "WHERE review_annotation_id = ?", (review.review_annotation_id,))
        if rows and (int(rows[0][0]) >= review.updated_us or rows[0][1]):
            return False
        sent_back = rows[0][2] if rows else review.sent_back_task_id  # a re-send is not undone
        self.run("DELETE FROM pose6d_qc_review WHERE review_annotation_id = ?",
                 (review.review_annotation_id,))
        self.run(f"INSERT INTO pose6d_qc_review ({REVIEW_COLUMNS}, received_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (review.review_annotation_id, review.updated_us, review.object_key,
                  review.annotation_id, review.decision, json.dumps(list(review.reasons)),
                  review.comment, review.reviewer, review.project_id, 0,
                  sent_back, review.reviewed_us, utc_now()))
        return True

    def delete_review(self, review_annotation_id: int) -> str | None:
        """Mark a review annotation deleted (it stops counting); its object key, if known."""
        rows = self.run("SELECT object_key FROM pose6d_qc_review WHERE review_annotation_id = ?",
                        (review_annotation_id,))
        self.run("UPDATE pose6d_qc_review SET deleted = 1 WHERE review_annotation_id = ?",
                 (review_annotation_id,))
        return rows[0][0] if rows else None

    def review_of(self, annotation_id: int) -> Review | None:
        """The newest live review of one labelling annotation, or None."""
        rows = self.run(f"SELECT {REVIEW_COLUMNS} FROM pose6d_qc_review WHERE annotation_id = ? "
                        "AND deleted = 0 ORDER BY updated_us DESC, review_annotation_id DESC "
                        "LIMIT 1", (annotation_id,))
        return Review.from_row(rows[0]) if rows else None

    def reviews(self, decision: str | None = None) -> list[Review]:
        where, params = ("AND decision = ?", (decision,)) if decision else ("", ())
        return [Review.from_row(r) for r in self.run(
            f"SELECT {REVIEW_COLUMNS} FROM pose6d_qc_review WHERE deleted = 0 {where} "
            "ORDER BY review_annotation_id", params)]

    def set_sent_back(self, review_annotation_id: int, task_id: int) -> None:
        self.run("UPDATE pose6d_qc_review SET sent_back_task_id = ? WHERE review_annotation_id = ?",
                 (task_id, review_annotation_id))


def _project(r: tuple) -> QcProject:
    return QcProject(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]), json.loads(r[4]))


def _qualification(r: tuple) -> Qualification:
    return Qualification(r[0], r[1], bool(r[2]), json.loads(r[3]),
                         None if r[4] is None else int(r[4]), r[5])


class QualityStore(Database):
    """Quality control's tables (in the sync store: ``label_sync.store.default_store_url``)."""

    tx_class = QualityTx
    schema = SCHEMA
