"""The project's exceptions: one base, one subclass per kind of failure.

Every error raised on purpose derives from ``Pose6DError`` and carries a one-line message for a
person (it names the file, object, field or limit). The kind says what a caller can do:

- ``BadInput``: the input is wrong as given (a NaN pose, a malformed request or event, an
  unknown command); retrying the same input changes nothing. A ``ValueError``.
- ``DataError``: a dataset file or object is missing, unreadable or malformed (photo, record,
  CAD mesh, task). A ``ValueError``.
- ``StoreFailure``: the sync store cannot be reached or written right now; what failed is kept
  and retried later.
- ``ServiceError``: Label Studio (or another service) cannot be reached or refused a request.
"""
from __future__ import annotations


class Pose6DError(Exception):
    """Base of every error this project raises on purpose; ``str(exc)`` is one line."""


class BadInput(Pose6DError, ValueError):
    """Input that is wrong as given; the same input will fail again."""


class DataError(Pose6DError, ValueError):
    """A dataset file or object that is missing, unreadable or malformed. The message names it."""


class StoreFailure(Pose6DError):
    """The sync store cannot be reached or written right now (retry later)."""


class ServiceError(Pose6DError):
    """Label Studio (or another service) cannot be reached or refused a request."""
