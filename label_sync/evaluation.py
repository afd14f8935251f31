"""The blind A/B evaluation's labeling config and its annotations -> ratings.

One evaluation task shows one object twice: the photo with the pose of source A drawn over it
and the photo with the pose of source B, left and right at random (pose6d-evaluate,
ls_admin.evaluate). The task's data carries only an opaque pair id and the two image URLs
(Label Studio Community shows every data field as a Data Manager column, so the key that says
which side is which lives in the store, label_sync.quality_store's pose6d_qc_pair). The rater
answers with one Choices: left better, right better, about the same.

The tag names and choice values below are the one source of truth: the config is built from
them, the sync engine (ratings arrive by the webhook: ``rating_from_annotation``) and
pose6d-evaluate (``results`` pulls them through the SDK) read annotations with them.

Why Choices and not Pairwise: docs/quality_control.md, section 2.
"""
from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from label_sync.quality_store import Rating
from label_sync.records import (SyncRejected, annotator_of, is_id, is_skipped,
                                parse_updated_at)

# Task data fields.
DATA_PAIR, DATA_LEFT, DATA_RIGHT = "pair", "left", "right"
# Tags: the two Image objects and the verdict (a Choices on ONE object: a Choices whose toName
# lists several objects lost data in Label Studio 1.2x, FIELD_NOTES §10).
IMAGE_LEFT, IMAGE_RIGHT, VERDICT = "left", "right", "verdict"
# Verdicts as stored (pose6d_qc_rating.choice) and as shown (Choice values), with hotkeys.
LEFT, RIGHT, SAME = "left", "right", "same"
CHOICES = {LEFT: "Left fits better", SAME: "About the same", RIGHT: "Right fits better"}
HOTKEYS = {LEFT: "1", SAME: "2", RIGHT: "3"}
QUESTION = "Which overlay fits the object in the photo better (its outline, its parts, its CAD model)?"
IMAGE_STYLE = "flex: 1; min-width: 0"


def labeling_config() -> str:
    """The evaluation project's labeling config: the two images side by side, the verdict."""
    def image(name: str, title: str) -> str:
        return (f'<View style={quoteattr(IMAGE_STYLE)}><Header value={quoteattr(title)} size="5"/>'
                f'<Image name="{name}" value="${name}" zoomControl="false" '
                f'rotateControl="false"/></View>')

    choices = "".join(f'<Choice value={quoteattr(CHOICES[v])} hotkey="{HOTKEYS[v]}"/>'
                      for v in (LEFT, SAME, RIGHT))
    return ("<View>\n"
            f"  <Header value={quoteattr(QUESTION)} size=\"4\"/>\n"
            '  <View style="display: flex; gap: 12px; align-items: flex-start">\n'
            f"    {image(IMAGE_LEFT, 'Left')}\n    {image(IMAGE_RIGHT, 'Right')}\n  </View>\n"
            f'  <Choices name="{VERDICT}" toName="{IMAGE_LEFT}" choice="single-radio" '
            f'required="true" showInline="true">{choices}</Choices>\n'
            "</View>\n")


def verdict_of(result: Any) -> str | None:
    """LEFT / RIGHT / SAME from an annotation's ``result`` list, None when it has no verdict.
    SyncRejected for a verdict that is not one of ours."""
    shown = {text: value for value, text in CHOICES.items()}
    for item in result if isinstance(result, list) else []:
        if not isinstance(item, dict) or item.get("from_name") != VERDICT:
            continue
        picked = (item.get("value") or {}).get("choices") if isinstance(item.get("value"), dict) \
            else None
        if not isinstance(picked, list) or len(picked) != 1 or picked[0] not in shown:
            raise SyncRejected(f"the evaluation verdict must be one of {sorted(shown)}, got "
                               f"{str(picked)[:80]}")
        return shown[picked[0]]
    return None


def rating_from_annotation(annotation: dict, task: dict, project_id: int) -> Rating | None:
    """The rating an evaluation annotation gives (its version: ``updated_at``); None for a
    skipped task. SyncRejected (with the reason) when it is not a valid rating: no pair id in
    the task's data, no verdict, or a verdict we do not know."""
    if is_skipped(annotation):
        return None
    if not is_id(annotation.get("id")):
        raise SyncRejected("the evaluation annotation has no id")
    data = task.get("data") if isinstance(task, dict) else None
    pair_id = data.get(DATA_PAIR) if isinstance(data, dict) else None
    if not isinstance(pair_id, str) or not pair_id or len(pair_id) > 64:
        raise SyncRejected("the evaluation task has no pair id in its data (not made by "
                           "pose6d-evaluate?)")
    choice = verdict_of(annotation.get("result"))
    if choice is None:
        raise SyncRejected(f"evaluation annotation {annotation['id']} has no verdict "
                           f"({VERDICT!r} is required)")
    _, updated_us = parse_updated_at(annotation.get("updated_at") or annotation.get("created_at"))
    task_id = task.get("id") if isinstance(task, dict) else None
    return Rating(annotation_id=int(annotation["id"]), pair_id=pair_id,
                  rater=annotator_of(annotation), choice=choice, updated_us=updated_us,
                  project_id=project_id if is_id(project_id) else None,
                  task_id=task_id if is_id(task_id) else None)
