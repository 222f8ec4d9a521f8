"""The Firestore client library, imported on first use, once, under a lock.

Importing main.py must stay cheap, so the library is imported lazily; but two
threads importing google.cloud.firestore at the same moment can find it half
initialised ("partially initialized module"). Every Firestore adapter takes the
library from here.
"""
from __future__ import annotations

from types import SimpleNamespace

from functions.adapters.lazy import Lazy


def _load() -> SimpleNamespace:
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
    from google.cloud.firestore_v1.document import DocumentSnapshot

    from functions.adapters import firestore_raw

    return SimpleNamespace(firestore=firestore, FieldFilter=FieldFilter, BulkWriteBatch=BulkWriteBatch,
                           DocumentSnapshot=DocumentSnapshot, raw=firestore_raw)


_library: Lazy[SimpleNamespace] = Lazy(_load)


def library() -> SimpleNamespace:
    return _library.get()
