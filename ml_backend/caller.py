"""Who makes an interactive call: which annotation (its chain) and which annotator.

Label Studio 1.23.2 sends neither with /predict (docs/label_studio_notes.md). What it does send:
- a command box call carries the box's result, whose id the browser made for that annotation
  (kept in its drafts, so across reloads): the annotation's chain;
- every call's task carries the requesting user's own drafts (no one else's), each naming its
  user, with the annotation's results as last saved (the command box's id among them). A draft
  exists a few seconds after the annotation's first change (Label Studio's autosave).

So a smart-tool call (a pin, a centre click, a box), which carries only the drawn regions, is
named by the caller's newest draft; before the first autosave it names nothing
(refinement_state.pick_chain then decides, or refuses when two annotators could have made it).
"""
from __future__ import annotations

from typing import Any

from pose6d import labeling


def command_box_id(results: Any) -> str | None:
    """The id the browser gave the command box's result in one annotation (it stays with the
    annotation, drafts and reloads included): the annotation's chain. None without one."""
    for item in results if isinstance(results, list) else []:
        if isinstance(item, dict) and item.get("from_name") == labeling.COMMAND:
            value = item.get("id")
            if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
                return value
    return None


def requesting_user(task: dict) -> str | None:
    """The annotator making the call: Label Studio includes only the requesting user's own
    drafts with an interactive call, each naming its user (an email). None without a draft."""
    for draft in newest_drafts(task):
        user = draft.get("user")
        if isinstance(user, str) and 0 < len(user) <= 254:
            return user
    return None


def newest_drafts(task: dict) -> list[dict]:
    """The requesting user's drafts of ``task`` that have results, newest first."""
    items = task.get("drafts") if isinstance(task, dict) else None
    items = [i for i in items if isinstance(i, dict) and isinstance(i.get("result"), list)] \
        if isinstance(items, list) else []
    return sorted(items, key=lambda i: str(i.get("updated_at") or i.get("created_at") or ""),
                  reverse=True)


def call_annotation(task: dict, context_results: Any) -> str | None:
    """The annotation a call belongs to: its command box id, from the call's own results (a
    command) or else from the caller's newest draft (a smart-tool call after the autosave).
    None when neither names one."""
    found = command_box_id(context_results)
    if found is not None:
        return found
    for draft in newest_drafts(task):
        found = command_box_id(draft["result"])
        if found is not None:
            return found
    return None
