"""The review project's labeling config and its annotations -> ``quality_store.Review``.

One source of truth for the review's tag names, choice values, reasons and task data fields:
the config is built here (``review_config``), pose6d-review makes tasks with these data fields
(ls_admin.review), and the sync engine parses a review project's annotations with
``review_from_annotation``. A reviewer sees the photo with the submitted pose rendered over it,
picks Accept or Reject, and for a rejection the original tool's reasons (a multi-choice shown
only when Reject is picked) and a comment.
"""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

from label_sync.quality_store import Review
from label_sync.records import (MalformedEvent, SyncRejected, annotator_of, is_id, is_skipped,
                                object_key_of, parse_updated_at)
from pose6d.tasks import REVIEW_NOTE, SENT_BACK_FOR

# Tag names of the review config.
OVERLAY_IMAGE, PHOTO_IMAGE = "overlay", "photo"
DECISION, REASONS, COMMENT = "decision", "reasons", "comment"
# Choice values as the reviewer sees them, and the decision they stand for (Review.decision).
ACCEPT, REJECT = "Accept", "Reject"
DECISIONS = {ACCEPT: "accept", REJECT: "reject"}
# The original quality page's reasons (ImageNet3D tool), in its order.
REASONS_SHOWN = ("bad CAD model", "more CAD models needed", "bad pose", "bad image")
MAX_COMMENT = 2000  # characters kept of a comment (a note, not an essay)

# Task data fields of a review task (the config reads the $ ones).
DATA_OVERLAY, DATA_PHOTO, DATA_SUMMARY = "overlay", "photo", "summary"
DATA_REVIEWED = "reviewed_annotation_id"  # the main project's annotation under review
# updated_at (microseconds since the epoch) of the version the reviewer sees: a later edit of the
# annotation is not covered by the review (Review.reviewed_us).
DATA_REVIEWED_US = "reviewed_updated_us"
DATA_MAIN_PROJECT = "main_project_id"
# Fields of a task sent back to the main project: the note the annotator reads and the review
# annotation it answers (the marker that finds a task created by a run killed before it recorded
# it, so that no object is sent back twice).
DATA_REVIEW_NOTE, DATA_SENT_BACK_FOR = REVIEW_NOTE, SENT_BACK_FOR  # the backend reads both


def review_config() -> str:
    """The review project's labeling config (Label Studio XML)."""
    accept_reject = "\n".join(f'      <Choice value={quoteattr(v)} hotkey="{h}" />'
                              for v, h in ((ACCEPT, "a"), (REJECT, "r")))
    reasons = "\n".join(f'      <Choice value={quoteattr(r)} hotkey="{n}" />'
                        for n, r in enumerate(REASONS_SHOWN, 1))
    return f"""<View style="display: flex; gap: 12px; align-items: flex-start">
  <View style="flex: 1 1 auto; min-width: 0">
    <Header value="$object_key" size="5" />
    <Text name="summary" value="${DATA_SUMMARY}" />
    <Image name="{OVERLAY_IMAGE}" value="${DATA_OVERLAY}" maxWidth="100%" />
    <Header value="The photo without the overlay" size="6" />
    <Image name="{PHOTO_IMAGE}" value="${DATA_PHOTO}" maxWidth="100%" />
  </View>
  <View style="flex: 0 0 300px; max-width: 300px">
    <Header value="Does the overlay fit the object?" size="5" />
    <Choices name="{DECISION}" toName="{OVERLAY_IMAGE}" choice="single-radio" required="true"
             requiredMessage="Accept or Reject the pose.">
{accept_reject}
    </Choices>
    <Choices name="{REASONS}" toName="{OVERLAY_IMAGE}" choice="multiple"
             visibleWhen="choice-selected" whenTagName="{DECISION}" whenChoiceValue="{REJECT}">
{reasons}
    </Choices>
    <Header value="Comment (shown to the annotator on a rejection)" size="6" />
    <TextArea name="{COMMENT}" toName="{OVERLAY_IMAGE}" rows="3" maxSubmissions="1"
              editable="true" />
  </View>
</View>
"""


def _items(result: list, name: str, kind: str) -> list[dict]:
    """The results of control ``name`` of type ``kind``."""
    return [item for item in result if isinstance(item, dict)
            and (item.get("from_name"), item.get("type")) == (name, kind)]


def _choices(result: list, name: str) -> list[str] | None:
    """The values chosen in control ``name`` (None when it has no result)."""
    found = None
    for item in _items(result, name, "choices"):
        value = item.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            raise SyncRejected(f"review: malformed {name} result")
        found = (found or []) + chosen
    return found


def _comment(result: list) -> str:
    lines: list[str] = []
    for item in _items(result, COMMENT, "textarea"):
        value = item.get("value")
        text = value.get("text") if isinstance(value, dict) else None
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list):
            raise SyncRejected("review: malformed comment result")
        lines += [str(t) for t in text]
    return "\n".join(lines).strip()[:MAX_COMMENT]


def review_from_annotation(annotation: dict, task: dict, project_id: int) -> Review | None:
    """The review one annotation of review project ``project_id`` records, None for a skip.

    Raises SyncRejected (saying why) when it is no valid review: a task without the object or
    the reviewed annotation, no decision or both, an unknown choice, a malformed result.
    """
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise SyncRejected("review: annotation and task must be objects")
    if is_skipped(annotation):
        return None
    review_id = annotation.get("id")
    if not is_id(review_id):
        raise SyncRejected(f"review: annotation needs an integer id, got {str(review_id)[:40]!r}")
    try:
        _, updated_us = parse_updated_at(annotation.get("updated_at"))
    except MalformedEvent as exc:
        raise SyncRejected(f"review: {exc}") from None
    key = object_key_of(task)
    data = task.get("data") or {}
    reviewed = data.get(DATA_REVIEWED)
    if not is_id(reviewed):
        raise SyncRejected(f"review: task data has no integer {DATA_REVIEWED}")
    reviewed_us = data.get(DATA_REVIEWED_US)
    if reviewed_us is not None and not is_id(reviewed_us):
        raise SyncRejected(f"review: task data {DATA_REVIEWED_US} must be an integer")
    result = annotation.get("result")
    if not isinstance(result, list):
        raise SyncRejected("review: annotation result must be a list")
    decision = _choices(result, DECISION) or []
    if len(decision) != 1 or decision[0] not in DECISIONS:
        raise SyncRejected(f"review: needs exactly one of {ACCEPT} / {REJECT}, got "
                           f"{[d[:40] for d in decision[:3]]}")
    kind = DECISIONS[decision[0]]
    reasons = _choices(result, REASONS) or []
    unknown = [r[:40] for r in reasons if r not in REASONS_SHOWN]
    if unknown:
        raise SyncRejected(f"review: unknown reason(s) {unknown}")
    # An accept carries no reasons (the reasons are hidden once Accept is picked).
    chosen = tuple(r for r in REASONS_SHOWN if r in reasons) if kind == "reject" else ()
    return Review(review_annotation_id=review_id, updated_us=updated_us, object_key=str(key),
                  annotation_id=int(reviewed), decision=kind, reasons=chosen,
                  comment=_comment(result), reviewer=annotator_of(annotation),
                  project_id=project_id, reviewed_us=reviewed_us)


def review_note(reviewer: str, reasons: tuple[str, ...] | list[str], comment: str) -> str:
    """What a sent-back task tells its annotator:
    "Sent back by <reviewer>: <reasons>; <comment>"."""
    why = ", ".join(reasons) or "no reason chosen"
    return f"Sent back by {reviewer}: {why}" + (f"; {comment}" if comment else "")
