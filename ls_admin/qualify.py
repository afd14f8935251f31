"""The qualification test: a Label Studio project of objects with reference poses, and each
annotator's answers scored against them (``pose6d-qualify``).

Label Studio Community has no ground-truth scoring or annotator evaluation (Enterprise), so:

- ``create_qualification`` sets up a project exactly like the labelling one (ls_admin.project:
  same labeling config, interactive backend, overlay) holding only objects with a reference pose
  (the dataset's ``ground_truth/``, or named objects' synced records), sets
  ``maximum_annotations`` so that every annotator gets every task, and registers the project in
  the sync store as a qualification project (before any task exists: the sync then never turns
  a test answer into a dataset record) with the pass rule and a copy of the references (a later
  edit of a synced record does not change the test).
- ``score_qualification`` reads every annotation of the project, takes each annotator's newest
  answer per object and scores it against the stored references (``score_answers``), decides
  pass / fail with the pass rule, and keeps one Qualification row per annotator in the store
  (written in one transaction at the end; an unchanged result is not rewritten).

How an answer counts (``score_answers``): an object whose reference shows an object (not
"bad quality - no object") is scored for rotation; a skipped task or an answer "no object" on
it counts as a miss (180 degrees). Centre error and CAD agreement are taken over the answers
with a pose; quality agreement over every answer that is not a skip.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from label_studio_sdk import LabelStudio

from label_sync.database import utc_now
from label_sync.quality_store import QUALIFICATION, Qualification, QualityStore
from label_sync.store import default_store_url
from ls_admin.connection import AdminError, sdk_call
from ls_admin.export_source import (BAD_STATUS, ExportError, Label, ground_truth_records,
                                    labels_from_project, newest_per_object,
                                    read_quality_store, read_records, user_names)
from ls_admin.project import SetupOptions, SetupReport, ensure_project, setup_project
from pose6d.camera import Pose
from pose6d.dataset import GROUND_TRUTH, SYNCED, Dataset, ObjectKey, ObjectRecord
from pose6d.pose_error import pose_rotation_error, summarize_errors

DEFAULT_TITLE = "pose6d qualification"
DEFAULT_ANNOTATORS = 100  # maximum_annotations: every annotator of a lab gets every test task
SOURCES = (GROUND_TRUTH, "synced")  # where the reference poses come from
MISS_DEG = 180.0  # the rotation error of a skip or a "no object" answer on an object


@dataclasses.dataclass(frozen=True)
class PassRule:
    """Pass: at least ``min_objects`` objects scored, median rotation error <= ``max_median_deg``
    and Acc@pi/6 >= ``min_acc``."""

    min_objects: int = 10
    max_median_deg: float = 10.0
    min_acc: float = 0.8

    def verdict(self, figures: dict[str, Any]) -> tuple[bool, str]:
        """(passed, why) for one annotator's figures (``score_answers``)."""
        n, med, acc = figures["objects"], figures["median_deg"], figures["acc_pi6"]
        if n < self.min_objects:
            return False, f"{n} objects scored, {self.min_objects} needed"
        fails = ([f"median {med:.1f} deg > {self.max_median_deg:g}"] if med > self.max_median_deg
                 else []) + ([f"Acc@pi/6 {acc:.2f} < {self.min_acc:g}"] if acc < self.min_acc else [])
        if fails:
            return False, "; ".join(fails)
        return True, (f"median {med:.1f} deg <= {self.max_median_deg:g}, Acc@pi/6 {acc:.2f} >= "
                      f"{self.min_acc:g} on {n} objects")

    def text(self) -> str:
        return (f"median rotation error <= {self.max_median_deg:g} deg and Acc@pi/6 >= "
                f"{self.min_acc:g} on at least {self.min_objects} objects")


# --- References: kept in the store as plain JSON (radians, like the dataset's records). ---


def reference_json(record: ObjectRecord) -> dict[str, Any]:
    """What the test keeps of a reference record: pose, CAD, quality and dense codes."""
    out: dict[str, Any] = {k: float(v) for k, v in record.pose.as_radians().items()}
    out.update(viewport=float(record.pose.viewport), focal=float(record.pose.focal),
               cad_index=int(record.cad_index))
    for name in ("object_status", "dense"):
        if record.extra.get(name) is not None:
            out[name] = str(record.extra[name])
    return out


def reference_record(data: dict[str, Any]) -> ObjectRecord:
    pose = Pose(**{k: data[k] for k in ("azimuth", "elevation", "theta", "distance", "px", "py",
                                        "viewport", "focal")})
    extra = {k: data[k] for k in ("object_status", "dense") if k in data}
    return ObjectRecord(pose, int(data["cad_index"]), extra)


def select_references(dataset: Dataset, source: str,
                      keys: list[ObjectKey] | None = None) -> dict[ObjectKey, ObjectRecord]:
    """Reference records by key: ``ground_truth/`` (all, or ``keys``), or the synced records of
    ``keys`` (objects a reviewer trusts; a rejected record is refused). AdminError if none."""
    try:
        if source == GROUND_TRUTH:
            refs = ground_truth_records(dataset)
            missing = [k for k in keys or [] if k not in refs]
            refs = refs if keys is None else {k: refs[k] for k in keys if k in refs}
        elif source == "synced":
            if not keys:
                raise AdminError("--from synced needs --keys (the objects whose synced records "
                                 "are the references)")
            missing = [k for k in keys if not dataset.record_path(k, SYNCED).is_file()]
            refs = read_records(dataset, SYNCED, [k for k in keys if k not in missing])
        else:
            raise AdminError(f"--from must be one of {', '.join(SOURCES)}, got {source!r}")
    except ExportError as exc:
        raise AdminError(str(exc)) from None
    if missing:
        raise AdminError(f"{len(missing)} objects have no {source} record, e.g. {missing[0]}")
    rejected = [k for k, r in refs.items() if str(r.extra.get("review_status", "")) == "rejected"]
    if rejected:
        raise AdminError(f"the synced record of {rejected[0]} was rejected in review: not a reference")
    if not refs:
        raise AdminError(f"no reference poses: {dataset.root / GROUND_TRUTH} has no records "
                         "(use --from synced --keys ...)")
    return refs


# --- Creating the project. ---


@dataclasses.dataclass
class QualifyOptions:
    """What ``create_qualification`` sets up; see pose6d-qualify create --help."""

    data_root: Path
    backend_url: str
    title: str = DEFAULT_TITLE
    project_id: int | None = None
    source: str = GROUND_TRUTH
    keys: list[ObjectKey] | None = None
    annotators: int = DEFAULT_ANNOTATORS
    rule: PassRule | None = None  # None: the stored rule (a re-run keeps it), else the default
    store_url: str | None = None
    image_url_prefix: str | None = None
    backend_auth: tuple[str, str] | None = None
    progress: bool = True


def create_qualification(client: LabelStudio, options: QualifyOptions,
                         base_url: str) -> SetupReport:
    """Set up (idempotently) the qualification project; see the module docstring."""
    dataset = Dataset.open(options.data_root)
    refs = select_references(dataset, options.source, options.keys)
    project, _ = ensure_project(client, options.title, options.project_id)
    store = QualityStore(default_store_url(dataset.root, options.store_url))
    try:
        with store.transaction() as tx:
            known = tx.project(project.id)
            if known is not None and known.kind != QUALIFICATION:
                raise AdminError(f"project {project.id} is a {known.kind} project, not a "
                                 "qualification project")
            if known is None and (getattr(project, "total_annotations_number", 0) or 0) > 0:
                raise AdminError(f"project {project.id} already has annotations and is not a "
                                 "qualification project: give a new --title")
            settings = merged_settings(known.settings if known else {}, refs, options)
            # Registered before any task exists: no answer is ever synced as a dataset record.
            tx.register_project(project.id, QUALIFICATION, options.title, None, settings)
    finally:
        store.close()
    set_maximum_annotations(client, project.id, options.annotators)
    keys = sorted(ObjectKey.parse(k) for k in settings["references"])
    report = setup_project(client, SetupOptions(
        data_root=dataset.root, backend_url=options.backend_url, title=options.title,
        project_id=project.id, keys=keys, image_url_prefix=options.image_url_prefix,
        progress=options.progress, backend_auth=options.backend_auth), base_url)
    rule = PassRule(**settings["pass_rule"])
    report.steps.append(f"qualification: {len(keys)} test objects ({settings['source']}), every "
                        f"annotator gets every task (maximum_annotations {options.annotators}); "
                        f"pass: {rule.text()}")
    if len(keys) < rule.min_objects:
        report.steps.append(f"WARNING: {len(keys)} test objects, fewer than the {rule.min_objects} "
                            "the pass rule needs: nobody can pass")
    return report


def merged_settings(stored: dict[str, Any], refs: dict[ObjectKey, ObjectRecord],
                    options: QualifyOptions) -> dict[str, Any]:
    """The project's settings: stored references are kept as they were (the test does not
    change under the annotators), new objects added; the pass rule from ``options.rule``, else
    the stored one, else the default."""
    references = dict(stored.get("references") or {})
    for key, record in sorted(refs.items()):
        references.setdefault(str(key), reference_json(record))
    rule = options.rule or PassRule(**stored.get("pass_rule", {}))
    return {"references": references, "pass_rule": dataclasses.asdict(rule),
            "source": stored.get("source", options.source), "maximum_annotations": options.annotators}


def set_maximum_annotations(client: LabelStudio, project_id: int, n: int) -> None:
    """Every annotator gets every task: ``maximum_annotations`` (no UI in Community) set through
    the API, read back to be sure it was honoured. Set before the import: Label Studio gives
    new tasks this overlap when they are imported."""
    project = sdk_call(f"reading project {project_id}", client.projects.get, id=project_id)
    if project.maximum_annotations != n:
        sdk_call(f"setting maximum_annotations of project {project_id}", client.projects.update,
                 id=project_id, maximum_annotations=n)
        project = sdk_call(f"reading project {project_id}", client.projects.get, id=project_id)
    if project.maximum_annotations != n:
        raise AdminError(f"Label Studio kept maximum_annotations {project.maximum_annotations} "
                         f"of project {project_id} (asked for {n})")


# --- Scoring. ---


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def score_answers(answers: Iterable[Label], refs: dict[ObjectKey, ObjectRecord]
                  ) -> dict[str, Any]:
    """One annotator's figures from their newest answer per test object (module docstring)."""
    errors: dict[str, float] = {}
    centre, cad, quality = [], [], []
    answered = skipped = 0
    for lab in answers:
        ref = refs.get(lab.key)
        if ref is None:
            continue
        answered += 1
        skipped += lab.skipped
        status = str(ref.extra.get("object_status", ""))
        if not lab.skipped and status:
            quality.append(lab.object_status == status)
        if lab.usable:
            centre.append(math.hypot(lab.record.pose.px - ref.pose.px,
                                     lab.record.pose.py - ref.pose.py))
            cad.append(int(lab.record.cad_index) == int(ref.cad_index))
        if status != BAD_STATUS:
            errors[str(lab.key)] = round(math.degrees(pose_rotation_error(
                ref.pose, lab.record.pose)), 4) if lab.usable else MISS_DEG
    s = summarize_errors(math.radians(e) for e in errors.values())
    return {"test_objects": len(refs), "answered": answered, "skipped": skipped,
            "objects": s["count"],
            "median_deg": None if not errors else round(s["median_deg"], 4),
            "acc_pi6": None if not errors else round(s["acc_pi6"], 4),
            "acc_pi18": None if not errors else round(s["acc_pi18"], 4),
            "centre_median_px": None if not centre else round(_median(centre), 3),
            "cad_agreement": None if not cad else round(_share(cad), 4),
            "quality_agreement": None if not quality else round(_share(quality), 4),
            "errors_deg": errors}


def judge(figures: dict[str, Any], rule: PassRule) -> tuple[bool, str]:
    """The pass rule on figures where a missing median / accuracy means no objects scored."""
    if not figures["objects"]:
        return False, f"0 objects scored, {rule.min_objects} needed"
    return rule.verdict(figures)


@dataclasses.dataclass
class ScoreReport:
    """What ``score_qualification`` found: a result per annotator, and what changed."""

    project_id: int
    rule: PassRule
    results: list[Qualification]
    changed: int = 0
    released: int | None = None  # held sync events applied after scoring (None: not run)
    rejected: list[str] = dataclasses.field(default_factory=list)


def score_qualification(client: LabelStudio, dataset: Dataset, project_id: int,
                        rule: PassRule | None = None, store_url: str | None = None,
                        release: bool = True) -> ScoreReport:
    """Score every annotator of the qualification project and store the results (one
    transaction); then apply the sync events held for annotators who have now passed."""
    url = default_store_url(dataset.root, store_url)
    store = QualityStore(url)
    try:
        with store.transaction() as tx:
            qc = tx.project(project_id)
        if qc is None or qc.kind != QUALIFICATION:
            raise AdminError(f"project {project_id} is not a qualification project in the store "
                             f"(made by pose6d-qualify create?)")
        refs = {ObjectKey.parse(k): reference_record(v) for k, v in qc.settings["references"].items()}
        rule = rule or PassRule(**qc.settings.get("pass_rule", {}))
        report = ScoreReport(project_id, rule, [])
        try:
            labels = labels_from_project(client, project_id, dataset, all_annotations=True,
                                         on_reject=report.rejected.append)
        except ExportError as exc:
            raise AdminError(str(exc)) from None
        names = user_names(client)
        by_annotator: dict[str, list[Label]] = defaultdict(list)
        for lab in labels:
            by_annotator[lab.annotator].append(lab)
        now = utc_now()
        for annotator, mine in sorted(by_annotator.items()):
            figures = score_answers(newest_per_object(mine), refs)
            passed, why = judge(figures, rule)
            figures.update(reason=why, rule=dataclasses.asdict(rule))
            report.results.append(Qualification(annotator, names.get(annotator), passed, figures,
                                                project_id, now))
        with store.transaction() as tx:  # all or nothing: a kill midway leaves the old rows
            for q in report.results:
                old = tx.qualification(q.annotator)
                if old is not None and (old.annotator, old.email, old.passed, old.figures,
                                        old.project_id) == (q.annotator, q.email, q.passed,
                                                            q.figures, q.project_id):
                    continue  # unchanged: keep its scored_at
                tx.set_qualification(q)
                report.changed += 1
    finally:
        store.close()
    if release:
        report.released = release_held(dataset, url)
    return report


def release_held(dataset: Dataset, store_url: str) -> int:
    """Apply the sync events held for annotators who had not passed (SyncService.release_held:
    backend --require-qualification); how many were applied."""
    from label_sync.engine import SyncService

    sync = SyncService(dataset, store_url)
    try:
        return sync.release_held()
    finally:
        sync.close()


def stored_results(dataset: Dataset, store_url: str | None = None) -> list[Qualification]:
    """Every Qualification row of the store (``status``; the report's section); none (and no
    store made) when the store does not exist."""
    def rows(store: QualityStore) -> list[Qualification]:
        with store.transaction() as tx:
            return tx.qualifications()

    return read_quality_store(dataset, store_url, rows, [])


def result_rows(results: Iterable[Qualification]) -> list[dict[str, Any]]:
    """One flat row per annotator for tables (terminal, HTML)."""
    rows = []
    for q in results:
        f = q.figures
        rows.append({"annotator": q.email or q.annotator, "user_id": q.annotator,
                     "passed": q.passed, "objects": f.get("objects"),
                     "answered": f.get("answered"), "test_objects": f.get("test_objects"),
                     "median_deg": f.get("median_deg"), "acc_pi6": f.get("acc_pi6"),
                     "acc_pi18": f.get("acc_pi18"), "centre_median_px": f.get("centre_median_px"),
                     "cad_agreement": f.get("cad_agreement"),
                     "quality_agreement": f.get("quality_agreement"),
                     "reason": f.get("reason", ""), "project_id": q.project_id,
                     "scored_at": q.scored_at})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: who passed, with their figures."""
    def num(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [f"{'annotator':<28} {'result':<6} {'objects':>7} {'median':>8} {'Acc@pi/6':>8} "
             f"{'centre':>8} {'CAD':>5} {'quality':>7}  why"]
    for r in rows:
        lines.append(f"{str(r['annotator'])[:28]:<28} {'PASS' if r['passed'] else 'FAIL':<6} "
                     f"{num(r['objects'], 'd'):>7} {num(r['median_deg'], '.1f'):>7}° "
                     f"{num(r['acc_pi6'], '.2f'):>8} {num(r['centre_median_px'], '.1f'):>6}px "
                     f"{num(r['cad_agreement'], '.2f'):>5} {num(r['quality_agreement'], '.2f'):>7}"
                     f"  {r['reason']}")
    return "\n".join(lines)
