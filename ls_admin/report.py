"""Labelling report: progress, the pretrained model's accuracy, agreement between annotators and
accuracy on ground-truth objects, with ImageNet3D's metrics (pose6d.pose_error).

All figures come from ``build_report(inputs)``, a plain dict (JSON-able) that the terminal
summary (``format_summary``) and the HTML page (ls_admin.report_html) both render.

- Progress: per category and per annotator, objects done (a completed annotation, also "bad
  quality - no object") and skipped, out of all objects of the dataset (annotations/).
- Model: the initial pose (annotations/, the model's output) against the final label (the newest
  completed annotation) of every object that has one with an object in it (not status_bad).
- Agreement: objects with usable labels from two or more annotators (each annotator's newest);
  the rotation error of every pair. Needs every annotation: the project, or the sync store.
- Ground truth: each annotator's labels on objects with a ground_truth/ record (not status_bad)
  against it, plus how often their quality label matches; an annotator is on target with
  Acc@pi/6 >= ``qualify_acc`` on at least ``qualify_min`` objects (a spot check of the work
  itself; the qualification test that gates annotators is pose6d-qualify, its results below).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter, defaultdict
from typing import Any

from ls_admin.export_source import (BAD_STATUS, Label, ground_truth_records,
                                    labels_from_project, labels_from_synced, newest_per_object,
                                    read_quality_store, read_records, store_labels,
                                    stored_reviews, user_names)
from pose6d.dataset import INITIAL, Dataset, ObjectKey, ObjectRecord
from pose6d.pose_error import pose_rotation_error, summarize_errors

QUALIFY_ACC, QUALIFY_MIN = 0.9, 5


@dataclasses.dataclass
class ReportInputs:
    """What a report is computed from.

    labels: every annotation when ``all_annotations``, else one per object.
    initial / ground_truth: records by key (radians). names: {annotator id: display name}.
    """

    source: str
    labels: list[Label]
    all_annotations: bool
    initial: dict[ObjectKey, ObjectRecord]
    ground_truth: dict[ObjectKey, ObjectRecord]
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    # pose6d-qualify's stored results (ls_admin.qualify.result_rows), one row per annotator
    qualifications: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # pose6d-evaluate's stored results (ls_admin.evaluate_results.store_results)
    evaluations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # pose6d-review's decisions kept in the store (review_summary)
    reviews: dict[str, Any] | None = None


def load_inputs(dataset: Dataset, client: Any = None, project_id: int | None = None,
                store_url: str | None = None, on_reject=None) -> ReportInputs:
    """Inputs from a project (``client`` and ``project_id``) or from the synced folder (every
    annotation from the sync store when there is one, else the newest per object)."""
    initial = read_records(dataset, INITIAL)
    gt = ground_truth_records(dataset)
    quals = stored_qualification_rows(dataset, store_url)
    evals = stored_evaluations(dataset, store_url)
    reviews = review_summary(dataset, store_url)
    if project_id is not None:
        labels = labels_from_project(client, project_id, dataset, True, on_reject=on_reject)
        return ReportInputs(f"Label Studio project {project_id}", labels, True, initial, gt,
                            user_names(client), quals, evals, reviews)
    stored = store_labels(dataset, store_url)
    if stored is not None:
        return ReportInputs(f"sync store of {dataset.root}", stored, True, initial, gt,
                            emails_of(stored), quals, evals, reviews)
    synced = labels_from_synced(dataset)
    return ReportInputs(f"{dataset.root}/annotations_new", synced, False, initial, gt,
                        emails_of(synced), quals, evals, reviews)


def stored_qualification_rows(dataset: Dataset, store_url: str | None = None
                              ) -> list[dict[str, Any]]:
    """pose6d-qualify's results kept in the sync store (none without a store)."""
    from ls_admin.qualify import result_rows, stored_results

    return result_rows(stored_results(dataset, store_url))


def stored_evaluations(dataset: Dataset, store_url: str | None = None) -> list[dict[str, Any]]:
    """pose6d-evaluate's blind A/B results kept in the sync store (none without a store)."""
    from ls_admin.evaluate_results import store_results

    return read_quality_store(dataset, store_url, store_results, [])


def review_summary(dataset: Dataset, store_url: str | None = None) -> dict[str, Any] | None:
    """pose6d-review's decisions in the sync store: how many accepted and rejected, of those
    how many sent back and how many wait for ``pose6d-review sync``, the reasons' counts and
    each reviewer's counts; None when nothing was reviewed."""
    reviews = stored_reviews(dataset, store_url)
    if not reviews:
        return None
    rejected = [r for r in reviews if r.decision == "reject"]
    per_reviewer: dict[str, Counter] = defaultdict(Counter)
    for r in reviews:
        per_reviewer[r.reviewer or "unknown"][r.decision] += 1
    return {"reviews": len(reviews), "accepted": len(reviews) - len(rejected),
            "rejected": len(rejected),
            "sent_back": sum(r.sent_back_task_id is not None for r in rejected),
            "reasons": dict(Counter(reason for r in rejected for reason in r.reasons)),
            "reviewers": [{"reviewer": name, "accepted": c["accept"], "rejected": c["reject"]}
                          for name, c in sorted(per_reviewer.items())]}


def emails_of(labels: list[Label]) -> dict[str, str]:
    """{annotator id: email} from the records (the backend stores the email when it knows it)."""
    return {lab.annotator: str(lab.record.extra["annotator_email"]) for lab in labels
            if lab.record.extra.get("annotator_email")}


def unseen_poses(inputs: ReportInputs) -> list[dict[str, Any]]:
    """Submitted labels whose pose had not been drawn for the annotator (``pose_rendered`` False
    in the record): the overlay they saw showed something else; worth a second look."""
    return [{"object": str(lab.key), "annotator": inputs.names.get(lab.annotator, lab.annotator),
             "annotation": lab.annotation_id} for lab in inputs.labels
            if not lab.skipped and _is_false(lab.record.extra.get("pose_rendered"))]


def _is_false(value: Any) -> bool:
    return value is not None and not bool(value)


def _deg(errors: list[float]) -> list[float]:
    return [math.degrees(e) for e in errors]


def _summary(errors: list[float]) -> dict[str, float]:
    return summarize_errors(errors)


def per_annotator_newest(labels: list[Label]) -> dict[tuple[ObjectKey, str], Label]:
    """{(object, annotator): that annotator's newest label of the object (completed first)}."""
    groups: dict[tuple[ObjectKey, str], list[Label]] = defaultdict(list)
    for lab in labels:
        groups[(lab.key, lab.annotator)].append(lab)
    return {k: newest_per_object(v)[0] for k, v in groups.items()}


def progress(inputs: ReportInputs) -> dict[str, Any]:
    """Objects done / skipped / bad, overall, per category and per annotator."""
    totals = Counter(k.category for k in inputs.initial)
    final = newest_per_object(inputs.labels)
    rows = []
    for category in sorted(set(totals) | {l.key.category for l in final}):
        mine = [l for l in final if l.key.category == category]
        rows.append({"category": category, "total": totals.get(category, 0),
                     "done": sum(not l.skipped for l in mine), "skipped": sum(l.skipped for l in mine),
                     "bad": sum(l.object_status == BAD_STATUS and not l.skipped for l in mine)})
    by_annotator: dict[str, dict[str, int]] = defaultdict(lambda: {"done": 0, "skipped": 0, "bad": 0})
    for (_, annotator), lab in per_annotator_newest(inputs.labels).items():
        row = by_annotator[annotator]
        row["skipped" if lab.skipped else "done"] += 1
        row["bad"] += lab.object_status == BAD_STATUS and not lab.skipped
    total = sum(totals.values())
    annotators = [{"annotator": inputs.names.get(a, a), **r, "total": total}
                  for a, r in sorted(by_annotator.items(), key=lambda kv: -kv[1]["done"])]
    return {"total": total, "done": sum(r["done"] for r in rows),
            "skipped": sum(r["skipped"] for r in rows), "bad": sum(r["bad"] for r in rows),
            "annotations": len(inputs.labels), "categories": rows, "annotators": annotators}


def model_accuracy(inputs: ReportInputs) -> dict[str, Any]:
    """The initial (model) pose against each object's final usable label."""
    errors: dict[str, list[float]] = defaultdict(list)
    cad_right = 0
    final = [l for l in newest_per_object(inputs.labels) if l.usable and l.key in inputs.initial]
    for lab in final:
        init = inputs.initial[lab.key]
        errors[lab.key.category].append(pose_rotation_error(init.pose, lab.record.pose))
        cad_right += int(init.cad_index) == int(lab.record.cad_index)
    every = [e for v in errors.values() for e in v]
    return {"overall": _summary(every), "errors_deg": _deg(every),
            "per_category": {c: _summary(v) for c, v in sorted(errors.items())},
            "cad_accuracy": cad_right / len(final) if final else math.nan}


def agreement(inputs: ReportInputs) -> dict[str, Any] | None:
    """Pairwise rotation errors between annotators' usable labels of the same object; None when
    the inputs hold one label per object."""
    if not inputs.all_annotations:
        return None
    by_object: dict[ObjectKey, list[Label]] = defaultdict(list)
    for (key, _), lab in sorted(per_annotator_newest(inputs.labels).items()):
        if lab.usable:
            by_object[key].append(lab)
    errors, per_category = [], defaultdict(list)
    pairs: dict[str, list[float]] = defaultdict(list)
    for key, labs in by_object.items():
        for a, b in itertools.combinations(labs, 2):
            e = pose_rotation_error(a.record.pose, b.record.pose)
            errors.append(e)
            per_category[key.category].append(e)
            names = sorted(inputs.names.get(x.annotator, x.annotator) for x in (a, b))
            pairs[" / ".join(names)].append(e)
    return {"objects": sum(len(v) > 1 for v in by_object.values()), "overall": _summary(errors),
            "errors_deg": _deg(errors),
            "per_category": {c: _summary(v) for c, v in sorted(per_category.items())},
            "pairs": {p: _summary(v) for p, v in sorted(pairs.items())}}


def ground_truth_accuracy(inputs: ReportInputs, qualify_acc: float = QUALIFY_ACC,
                          qualify_min: int = QUALIFY_MIN) -> dict[str, Any] | None:
    """Per annotator: rotation errors against ground_truth/ records, quality agreement and the
    on-target verdict; None when the dataset has no ground truth."""
    if not inputs.ground_truth:
        return None
    errors: dict[str, list[float]] = defaultdict(list)
    status: dict[str, list[bool]] = defaultdict(list)
    for (key, annotator), lab in per_annotator_newest(inputs.labels).items():
        gt = inputs.ground_truth.get(key)
        if gt is None or lab.skipped:
            continue
        gt_status = str(gt.extra.get("object_status", ""))
        if gt_status:
            status[annotator].append(lab.object_status == gt_status)
        if gt_status != BAD_STATUS and lab.usable:
            errors[annotator].append(pose_rotation_error(gt.pose, lab.record.pose))
    rows = []
    for annotator in sorted(set(errors) | set(status)):
        s = _summary(errors[annotator])
        agree = status[annotator]
        rows.append({"annotator": inputs.names.get(annotator, annotator), **s,
                     "quality_agreement": sum(agree) / len(agree) if agree else math.nan,
                     "on_target": bool(s["count"] >= qualify_min and s["acc_pi6"] >= qualify_acc)})
    every = [e for v in errors.values() for e in v]
    return {"objects": len(inputs.ground_truth), "overall": _summary(every),
            "annotators": rows, "qualify_acc": qualify_acc, "qualify_min": qualify_min,
            "errors_deg": {inputs.names.get(a, a): _deg(v) for a, v in sorted(errors.items())}}


def build_report(inputs: ReportInputs, qualify_acc: float = QUALIFY_ACC,
                 qualify_min: int = QUALIFY_MIN) -> dict[str, Any]:
    """Every figure of the report as a JSON-able dict."""
    return {"source": inputs.source, "all_annotations": inputs.all_annotations,
            "progress": progress(inputs), "model": model_accuracy(inputs),
            "agreement": agreement(inputs),
            "ground_truth": ground_truth_accuracy(inputs, qualify_acc, qualify_min),
            "unseen": unseen_poses(inputs), "qualification": inputs.qualifications,
            "evaluation": inputs.evaluations, "review": inputs.reviews}


# --- Terminal summary. ---


def _pct(x: float) -> str:
    return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def _metrics(s: dict[str, float]) -> str:
    med = s["median_deg"]
    return (f"n={s['count']:<5d} Acc@pi/6 {_pct(s['acc_pi6'])}  Acc@pi/18 {_pct(s['acc_pi18'])}  "
            f"median {'-' if math.isnan(med) else f'{med:.1f} deg'}")


def format_summary(report: dict[str, Any]) -> str:
    """A readable plain-text summary of ``build_report``'s dict."""
    p = report["progress"]
    lines = [f"pose6d report ({report['source']})",
             f"progress: {p['done']} / {p['total']} objects done ({_pct(p['done'] / p['total'] if p['total'] else math.nan).strip()}), "
             f"{p['skipped']} skipped, {p['bad']} bad/no object; {p['annotations']} annotations"]
    for r in p["categories"]:
        lines.append(f"  {r['category']:<24} {r['done']:>6} / {r['total']:<6} skipped {r['skipped']:<4} bad {r['bad']}")
    lines.append("per annotator (objects done / skipped / bad):")
    for r in p["annotators"]:
        lines.append(f"  {r['annotator']:<24} {r['done']:>6} / {r['skipped']:<4} / {r['bad']}")
    m = report["model"]
    lines.append(f"pretrained model vs final labels: {_metrics(m['overall'])}  "
                 f"CAD right {_pct(m['cad_accuracy']).strip()}")
    for c, s in m["per_category"].items():
        lines.append(f"  {c:<24} {_metrics(s)}")
    a = report["agreement"]
    if a is None:
        lines.append("agreement: not available (one label per object: no sync store; "
                     "use --project-id or the backend's sync store)")
    else:
        lines.append(f"agreement ({a['objects']} objects labeled twice or more): {_metrics(a['overall'])}")
        for pair, s in a["pairs"].items():
            lines.append(f"  {pair:<32} {_metrics(s)}")
    g = report["ground_truth"]
    if g is None:
        lines.append("ground truth: none in this dataset (ground_truth/)")
    else:
        lines.append(f"against ground truth ({g['objects']} objects; on target = Acc@pi/6 >= "
                     f"{g['qualify_acc']:.0%} on >= {g['qualify_min']}):")
        for r in g["annotators"]:
            lines.append(f"  {r['annotator']:<24} {_metrics(r)}  quality agrees "
                         f"{_pct(r['quality_agreement']).strip()}  "
                         f"{'ON TARGET' if r['on_target'] else 'not on target'}")
    quals = report.get("qualification") or []
    if quals:
        lines.append(f"qualification test (pose6d-qualify): "
                     f"{sum(r['passed'] for r in quals)} of {len(quals)} annotators passed")
        for r in quals:
            lines.append(f"  {str(r['annotator']):<24} {'PASSED' if r['passed'] else 'not passed'}"
                         f"  {r['reason']}")
    for e in report.get("evaluation") or []:
        from ls_admin.evaluate_results import format_results

        lines.append(format_results(e))
    review = report.get("review")
    if review:
        lines.append(f"review (pose6d-review): {review['reviews']} decisions, {review['accepted']} "
                     f"accepted, {review['rejected']} rejected ({review['sent_back']} sent back, "
                     f"{review['rejected'] - review['sent_back']} waiting for pose6d-review sync)")
    unseen = report.get("unseen") or []
    lines.append(f"poses submitted without being drawn for the annotator: {len(unseen)}")
    for r in unseen:
        lines.append(f"  {r['object']:<32} by {r['annotator']} (annotation {r['annotation']})")
    return "\n".join(lines)
