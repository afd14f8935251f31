"""Auto-fit at prefill, the admin's side (``setup_project --prefill-fit``).

1. Every object about to be imported is fitted to its photo (pose6d.fitting.batch, a progress bar,
   ``workers`` processes) and the fit is kept in the dataset's FitCache, where the backend
   started with ``--prefill-fit`` finds it: opening a task then costs a file read, not a fit.
2. Each task carries the fit score (``data.fit_score``, 0-1: how well the fitted silhouette
   explains the photo, pose6d.fitting.fit), the number the backend also returns as the prediction's
   score.
3. A Data Manager view, "Hardest first (auto-fit score)", sorts the tasks by it, lowest first:
   with "Label Tasks As Displayed" annotators get the objects the fit could not explain first.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterable

from label_studio_sdk import LabelStudio

from ls_admin.connection import AdminError, sdk_call
from pose6d.dataset import Dataset, ObjectKey
from pose6d.labeling import DATA_FIT_SCORE

FIT_VIEW_TITLE = "Hardest first (auto-fit score)"
FIT_VIEW_ORDERING = [f"tasks:data.{DATA_FIT_SCORE}"]  # ascending: the lowest score first
SCORE_DIGITS = 4  # data.fit_score is rounded: a readable column, and no "1e-05" forms


def prefill_fits(dataset: Dataset, keys: Iterable[ObjectKey], workers: int = 1,
                 progress: bool = True) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Fit ``keys`` (kept in the dataset's FitCache); returns ({object key: fit score},
    [(object key, why it could not be fitted)]). AdminError when auto-fit is not installed."""
    try:
        from pose6d.fitting.batch import fit_lines
        import pose6d.fitting.fit  # noqa: F401 - OpenCV: fail now with one line, not per object
    except ImportError as exc:
        raise AdminError(f"--prefill-fit needs auto-fit, which needs OpenCV ({exc}): "
                         "pip install opencv-python-headless") from None
    scores: dict[str, float] = {}
    failed: list[tuple[str, str]] = []
    for line in fit_lines(dataset.root, [str(k) for k in keys], workers, cache=True,
                          progress=progress, desc="prefill fit"):
        if "error" in line:
            failed.append((line["object_key"], line["error"]))
        else:
            scores[line["object_key"]] = round(float(line["score"]), SCORE_DIGITS)
    return scores, failed


def ensure_fit_view(client: LabelStudio, project_id: int) -> str:
    """The project's Data Manager tab sorted by fit score, lowest first; says what it did."""
    views = sdk_call("listing the Data Manager views", client.views.list, project=project_id)
    if any(_title(v) == FIT_VIEW_TITLE for v in views):
        return f"Data Manager view {FIT_VIEW_TITLE!r}: present"
    sdk_call(f"creating the Data Manager view {FIT_VIEW_TITLE!r}", client.views.create,
             project=project_id, data={"title": FIT_VIEW_TITLE, "ordering": FIT_VIEW_ORDERING,
                                       "filters": {"conjunction": "and", "items": []}})
    return f"Data Manager view {FIT_VIEW_TITLE!r}: created (sorted by data.{DATA_FIT_SCORE})"


def _title(view: Any) -> str | None:
    data = getattr(view, "data", None)
    if isinstance(data, dict):
        return data.get("title")
    return getattr(data, "title", None) if data is not None else None


def backend_prefills(backend_url: str, headers: dict[str, str]) -> bool | None:
    """Whether the backend fits at prefill (its /health says so); None when it cannot tell."""
    request = urllib.request.Request(backend_url.rstrip("/") + "/health", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    value = body.get("prefill_fit") if isinstance(body, dict) else None
    return value if isinstance(value, bool) else None
