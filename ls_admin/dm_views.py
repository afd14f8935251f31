"""The project's first Data Manager tab, made at setup with the columns annotators need.

Label Studio 1.23.2 makes a "Default" tab the first time someone opens a project's Data Manager,
showing every task data field: our ``cad_options`` (the CAD gallery's pictures as HTML) then
fills the table with raw markup. Setup makes that tab first, the same as Label Studio's own
(its hidden columns, read from a tab it made), with our data fields hidden where they are noise.
A project that already has tabs is left alone (an admin may have arranged them).
"""
from __future__ import annotations

from label_studio_sdk import LabelStudio

from ls_admin.connection import sdk_call
from pose6d import labeling as L
from pose6d.tasks import REVIEW_NOTE

DEFAULT_VIEW_TITLE = "Default"
# Label Studio's own hidden columns of a new tab (1.23.2), in both of its table modes.
_LS_HIDDEN = ["tasks:inner_id", "tasks:annotations_results", "tasks:annotations_ids",
              "tasks:predictions_score", "tasks:predictions_model_versions",
              "tasks:predictions_results", "tasks:file_upload", "tasks:storage_filename",
              "tasks:created_at", "tasks:updated_at", "tasks:updated_by", "tasks:avg_lead_time",
              "tasks:draft_exists"]
_LS_HIDDEN_LABELING = ["tasks:id", "tasks:completed_at", "tasks:cancelled_annotations",
                       "tasks:total_predictions", "tasks:annotators"]
# Our task data fields (pose6d.tasks): hidden in the table ("explore") where they are markup
# or noise; in the labeling mode's narrow list every one but the photo.
_DATA_HIDDEN = [L.DATA_CAD_OPTIONS, L.DATA_INSTRUCTIONS]
_DATA_HIDDEN_LABELING = ["object_key", "category", "bbox", "width", "height", "viewport",
                         "cad_index", L.DATA_CAD_OPTIONS, L.DATA_INSTRUCTIONS, L.DATA_FIT_SCORE,
                         REVIEW_NOTE]


def hidden_columns() -> dict[str, list[str]]:
    """The tab's ``hiddenColumns`` (Label Studio's column ids, ``tasks:data.<field>``)."""
    data = lambda names: [f"tasks:data.{n}" for n in names]  # noqa: E731
    return {"explore": _LS_HIDDEN + data(_DATA_HIDDEN),
            "labeling": data(_DATA_HIDDEN_LABELING) + _LS_HIDDEN_LABELING + _LS_HIDDEN}


def ensure_default_view(client: LabelStudio, project_id: int) -> str:
    """Make the project's first Data Manager tab unless it has one; says what it did."""
    views = sdk_call("listing the Data Manager views", client.views.list, project=project_id)
    if list(views):
        return "Data Manager tabs: present (left as they are)"
    sdk_call(f"creating the Data Manager tab {DEFAULT_VIEW_TITLE!r}", client.views.create,
             project=project_id, data={"title": DEFAULT_VIEW_TITLE, "type": "list",
                                       "target": "tasks", "hiddenColumns": hidden_columns(),
                                       "filters": {"conjunction": "and", "items": []}})
    return f"Data Manager tab {DEFAULT_VIEW_TITLE!r}: created ({L.DATA_CAD_OPTIONS} hidden)"
