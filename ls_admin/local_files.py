"""Label Studio serving the dataset's photos as local files: its document root, learnt through
the API, and a local-files import storage on the data root (never synced: that would turn every
file into a task). The other way, image URLs with a prefix, needs nothing here."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ls_admin.connection import AdminError, api_error_text, sdk_call
from pose6d.tasks import LOCAL_FILES_PREFIX

# Label Studio names its document root in the error for a storage outside it (1.23.2,
# io_storages/localfiles/models.py validate_connection): the one way to learn it through the API.
DOC_ROOT_RE = re.compile(r'LOCAL_FILES_DOCUMENT_ROOT="([^"]*)"')


def document_root(client: LabelStudio, project_id: int) -> Path:
    """Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, read from its refusal of "/"."""
    try:
        client.import_storage.local.validate(project=project_id, path="/")
    except ApiError as exc:
        text = " ".join(_strings(exc.body))
        if "LOCAL_FILES_SERVING_ENABLED" in text:
            raise AdminError("Label Studio does not serve local files: start it with "
                             "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                             "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<a parent of the data root>, "
                             "or pass --image-url-prefix") from None
        match = DOC_ROOT_RE.search(text)
        if match and match.group(1):
            return Path(match.group(1))
        raise AdminError(f"cannot learn Label Studio's local-files document root "
                         f"({api_error_text(exc)}); pass --image-url-prefix") from None
    raise AdminError("Label Studio accepted '/' as a local-files path: refusing to expose the "
                     "whole file system; set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (Label Studio's error bodies nest them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def local_files_prefix(root: Path, data_root: Path) -> str:
    """The image-URL prefix for files under ``data_root`` (a strict subfolder of ``root``)."""
    rel = data_root.resolve().relative_to(root.resolve()).as_posix()
    return LOCAL_FILES_PREFIX + quote(rel, safe="/") + "/"


def ensure_local_storage(client: LabelStudio, project_id: int, data_root: Path) -> tuple[str, str]:
    """(image URL prefix, what happened) for a local-files storage on ``data_root``."""
    data_root = data_root.resolve()
    root = document_root(client, project_id).resolve()
    if root == data_root or root not in data_root.parents:
        raise AdminError(f"Label Studio serves local files only below {root} (its "
                         f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), and {data_root} is not a "
                         "subfolder of it: move the data, restart Label Studio with a parent "
                         "folder as document root, or pass --image-url-prefix")
    prefix = local_files_prefix(root, data_root)
    storages = sdk_call("listing local-files storages", client.import_storage.local.list,
                        project=project_id)
    if any(Path(s.path or "").resolve() == data_root for s in storages):
        return prefix, f"local-files storage on {data_root}: present"
    sdk_call(f"adding a local-files storage on {data_root}", client.import_storage.local.create,
             project=project_id, path=str(data_root), title="pose6d images", use_blob_urls=False)
    return prefix, f"local-files storage on {data_root}: created (document root {root})"
