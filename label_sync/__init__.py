"""The sync layer: Label Studio annotations back to the dataset, between ``pose6d`` (below) and
the service and admin tools (above).

- ``records``: annotation -> dataset record (the translation every reader shares);
- ``database``: SQLite / PostgreSQL connections, transactions and locks;
- ``store``: the sync's tables and all of their SQL;
- ``engine``: ``SyncService``, the event engine and reconcile's repair steps.
"""
from label_sync.engine import SyncService
from label_sync.records import MalformedEvent, SyncRejected
from label_sync.store import DEFAULT_STORE, STORE_ENV, default_store_url

__all__ = ["SyncService", "MalformedEvent", "SyncRejected", "DEFAULT_STORE", "STORE_ENV",
           "default_store_url"]
