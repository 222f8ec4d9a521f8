"""What the services need from the outside world, as Protocols.

Services depend on these; the adapters in functions/adapters/ implement them
against Firestore, Pub/Sub and Google's REST APIs, and the in-memory fakes in
tests/unit/fakes.py implement them for fast service tests. A `version` is the
store's write time of a document, the precondition of the next write to it.
"""
from __future__ import annotations

from concurrent.futures import Future
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

from functions.domain.adaptive import DurationStats
from functions.domain.events import Message, OutboxEntry
from functions.domain.names import OperationRef
from functions.domain.record import Record, Versioned
from functions.domain.tracking import ApiFailure, Decision


class RecordStore(Protocol):
    """Tracked-operation records: what submit, handle and discovery read and write."""

    def create(self, record: Record) -> tuple[Record, bool]:
        """(stored record, created): never a second record for one id."""

    def get(self, operation_id: str) -> Record | None: ...

    def get_versioned(self, operation_id: str) -> Versioned | None: ...

    def update_fields(self, operation_id: str, changes: dict) -> None: ...

    def existing_ids(self, operation_ids: list[str]) -> set[str]: ...

    def list(self, *, state: str | None = None, service: str | None = None, labels: dict | None = None,
             limit: int = 50, page_token: str | None = None) -> tuple[list[Record], str | None]: ...


class PollStore(RecordStore, Protocol):
    """The records as the poller sees them: due pages, and the one guarded write path."""

    def due_page(self, now: datetime, limit: int, shards: frozenset[int] | None = None,
                 after: Any = None) -> tuple[list[Versioned], Any]: ...

    def due_count(self, now: datetime, shards: frozenset[int] | None, up_to: int) -> int: ...

    def next_due_at(self, shards: frozenset[int] | None = None) -> datetime | None: ...

    def reschedule_many(self, items: list[tuple[Versioned, datetime]], now: datetime) -> int: ...

    def commit(self, items: list[tuple[Versioned, Decision]]) -> list[Any]:
        """Each decision's record (with its messages in the outbox, atomically), guarded by the
        version it was decided on: the new version, or None where someone else wrote since."""


class Outbox(Protocol):
    """Messages committed with their changes and not yet published."""

    def outbox_pages(self, older_than: datetime, page_size: int = 500) -> Iterator[list[OutboxEntry]]: ...

    def outbox_operation_ids(self) -> set[str]: ...

    def delete_outbox(self, entry_ids: Iterable[str]) -> None: ...


class Leases(Protocol):
    """Named, expiring leases: run markers, shard ownership, watch-scope listings."""

    def acquire(self, key: str, holder: str, now: datetime, until: datetime, **fields) -> Any:
        """The lease's version when `holder` now holds it; None while another holder's runs."""

    def acquire_many(self, keys: list[str], holder: str, now: datetime, until: datetime,
                     **fields) -> dict[str, Any]: ...

    def renew(self, held: Mapping[str, Any], until: datetime, **fields) -> dict[str, Any]:
        """New versions of the leases (key → version) still ours, their end moved to `until`."""

    def get(self, key: str) -> dict | None: ...


class Claims(Protocol):
    """Once-only effects (handle): "acquired", "done" or "busy"."""

    def claim(self, key: str, now: datetime, expires_s: float) -> str: ...

    def complete(self, key: str, result: dict, now: datetime, keep_days: float) -> None: ...

    def release(self, key: str) -> None: ...

    def result(self, key: str) -> dict | None: ...


class Durations(Protocol):
    """Learnt duration summaries per (service, kind, location)."""

    def read(self, keys: Iterable[str]) -> dict[str, DurationStats]: ...

    def add(self, additions: dict[str, DurationStats]) -> None: ...


class OperationsApi(Protocol):
    """Google's google.longrunning.Operations endpoints."""

    def get(self, ref: OperationRef, quota_project: str | None = None) -> dict | ApiFailure: ...

    def start_gets(self, requests: Sequence[tuple[OperationRef, str | None]]) -> list[Future]:
        """get() of each (ref, quota project), started at once: a Future of each answer."""

    def cancel(self, ref: OperationRef, quota_project: str | None = None) -> Any: ...

    def list(self, endpoint_ref: OperationRef, parent: str, filter_: str = "", page_size: int = 100,
             page_token: str = "") -> tuple[list[dict], str]: ...


class Publisher(Protocol):
    def publish(self, topic: str, messages: Sequence[Message]) -> list[str | Exception]:
        """One message id or exception per message, in order; a failed ordering key skips no message."""

    def publish_one(self, topic: str, message: Message) -> str: ...
