"""Watch scopes: track operations nobody submitted, found by listing their collections.

Each configured scope (service, parent, filter) is listed page by page at most
once per WATCH_INTERVAL_S (a lease document per scope says when it was last
taken; a listing cut off by the run's budget keeps its page token there, and the
next run goes on from it), and every operation found is tracked through the same idempotent
create as `submit`, with source "watch". A page is checked for already
tracked operations in one batched read, so a listing of known operations
costs reads, not failed creates.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from functions.domain import learning
from functions.domain.runs import lease_key
from functions.config import Settings
from functions.domain.errors import InvalidArgument, PermissionDenied
from functions.domain.names import build_ref
from functions.domain.parents import check_allowed
from functions.domain.record import utcnow
from functions.domain.submission import parse_submission
from functions.ports import Leases, OperationsApi, RecordStore

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 300.0
PAGE_SIZE = 100


@dataclass
class DiscoverySummary:
    scopes_listed: int = 0
    scopes_failed: int = 0
    found: int = 0
    tracked: int = 0


class Discovery:
    def __init__(self, settings: Settings, store: RecordStore, leases: Leases, api: OperationsApi, *,
                 clock: Callable = utcnow, monotonic: Callable[[], float] = time.monotonic,
                 interval_s: float = WATCH_INTERVAL_S):
        self._settings = settings
        self._store = store
        self._leases = leases
        self._api = api
        self._clock = clock
        self._monotonic = monotonic
        self._interval_s = interval_s

    def run(self, run_id: str, stop_at: float) -> DiscoverySummary:
        """List the scopes that are due, until the monotonic time `stop_at`. Each scope is on
        its own: one that fails is logged and listed again by the next run."""
        summary = DiscoverySummary()
        for service, parent, filter_ in self._settings.watch_scopes:
            if self._monotonic() >= stop_at:
                break
            try:
                self._scope(run_id, service, parent, filter_, stop_at, summary)
            except Exception as exc:
                summary.scopes_failed += 1
                log.warning("watch scope listing failed; the next run lists it again", extra={
                    "service": service, "parent": parent, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        return summary

    def _scope(self, run_id: str, service: str, parent: str, filter_: str, stop_at: float,
               summary: DiscoverySummary) -> None:
        """List one scope, from where an earlier run stopped (the page token kept on its lease)."""
        key = lease_key("watch", hashlib.sha256(f"{service}\n{parent}\n{filter_}".encode()).hexdigest()[:16])
        now = self._clock()
        until = now + timedelta(seconds=self._interval_s)
        version = self._leases.acquire(key, run_id, now, until, service=service, parent=parent, filter=filter_)
        if not version:
            return  # listed less than an interval ago (or being listed)
        # Refused before any request: a scope outside LRO_ALLOWED_PARENTS is a configuration error.
        check_allowed(self._settings.allowed_parents, name=parent)
        summary.scopes_listed += 1
        token = (self._leases.get(key) or {}).get("page_token") or ""
        try:
            token = self._list_scope(service, parent, filter_, token, stop_at, summary)
        except Exception:
            self._release(key, version)
            raise
        if token:  # cut off by the budget: the next run goes on from this page
            self._leases.renew({key: version}, self._clock(), page_token=token)
        else:
            self._leases.renew({key: version}, until, page_token="")

    def _release(self, key: str, version) -> None:
        try:
            self._leases.renew({key: version}, self._clock())
        except Exception:  # the lease then ends on its own, an interval later
            log.warning("could not release a watch scope's lease", extra={"lease": key}, exc_info=True)

    def _list_scope(self, service: str, parent: str, filter_: str, token: str, stop_at: float,
                    summary: DiscoverySummary) -> str:
        """List pages from `token` until the end (returns "") or the budget (returns the next token)."""
        endpoint = build_ref(f"{parent}/operations/scope", service)  # host and version of the scope
        while self._monotonic() < stop_at:
            operations, token = self._api.list(endpoint, parent, filter_, PAGE_SIZE, token)
            summary.found += len(operations)
            self._track(service, operations, summary)
            if not token:
                return ""
        return token

    def _track(self, service: str, operations: list[dict], summary: DiscoverySummary) -> None:
        now = self._clock()
        records = {}
        for operation in operations:
            try:
                record = parse_submission(
                    {"name": operation.get("name"), "service": service}, now,
                    default_policy=self._settings.default_policy, notify_url_prefixes=(),
                    shards=self._settings.shards, source="watch", allowed_parents=self._settings.allowed_parents)
            except (InvalidArgument, PermissionDenied) as exc:
                log.warning("listed operation not trackable", extra={"error": exc.message})
                continue
            # The listing says when it began: its first poll and its ETA count from then.
            records[record.id] = record.with_changes(
                started_at=learning.believable_start(operation.get("metadata"), record.submitted_at))
        known = self._store.existing_ids(list(records)) if records else set()
        for operation_id, record in records.items():
            if operation_id not in known and self._store.create(record)[1]:
                summary.tracked += 1
