"""Use cases behind `submit` and `submit_pubsub`: track, read, request a cancel."""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Mapping

from functions.config import Settings
from functions.domain import events, items
from functions.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from functions.domain.names import is_operation_id, resolve_service
from functions.domain.record import Record, utcnow
from functions.domain.states import State
from functions.domain.submission import LABEL_RULES, differing_settings, parse_submission, valid_label
from functions.ports import Publisher, RecordStore

log = logging.getLogger(__name__)

MAX_PAGE = 500


class SubmitService:
    def __init__(self, settings: Settings, store: RecordStore, publisher: Publisher, clock: Callable = utcnow):
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._clock = clock

    def submit(self, raw: Any, source: str = "submit") -> tuple[Record, bool]:
        """Validate then create-if-absent: (record, created). Nothing is stored on error."""
        record = parse_submission(
            raw, self._clock(),
            default_policy=self._settings.default_policy,
            notify_url_prefixes=self._settings.notify_url_prefixes,
            shards=self._settings.shards,
            source=source,
            allowed_parents=self._settings.allowed_parents,
        )
        stored, created = self._store.create(record)
        differing = [] if created else differing_settings(raw, record, stored)
        if differing:
            raise AlreadyExists(f"operation {stored.id} is already tracked with other settings: "
                                f"{', '.join(differing)[:300]} differ; resubmit with the same settings, "
                                "or leave them out")
        log.info("operation %s", "tracked" if created else "already tracked",
                 extra={"operation_id": stored.id, "operation": stored.name, "state": stored.state.value})
        return stored, created

    def get(self, operation_id: str) -> Record:
        if not is_operation_id(operation_id):
            raise NotFound(f"operation {operation_id[:80]!r} is not tracked")
        record = self._store.get(operation_id)
        if record is None:
            raise NotFound(f"operation {operation_id} is not tracked")
        return record

    def list(self, params: Mapping[str, str]) -> dict:
        """GET /operations?state=&service=&label.K=V&limit=&page_token= (contract §4)."""
        allowed = {"state", "service", "limit", "page_token"}
        labels = {k[len("label."):]: v for k, v in params.items() if k.startswith("label.")}
        if not all(valid_label(k, v) for k, v in labels.items()):
            raise InvalidArgument(f"label.KEY=VALUE filters: {LABEL_RULES}")
        unknown = [k for k in params if k not in allowed and not k.startswith("label.")]
        if unknown:
            raise InvalidArgument(f"unknown query parameters: {', '.join(sorted(unknown))[:200]}")
        state = params.get("state") or None
        if state is not None and state not in State.__members__:
            raise InvalidArgument(f"state must be one of {', '.join(State.__members__)}")
        service = resolve_service(params["service"]).host if params.get("service") else None
        try:
            limit = int(params.get("limit") or 50)
        except ValueError as exc:
            raise InvalidArgument("limit must be a whole number") from exc
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE}")
        records, token = self._store.list(state=state, service=service, labels=labels, limit=limit,
                                          page_token=params.get("page_token") or None)
        body: dict = {"operations": [r.to_list_json() for r in records]}
        if token:
            body["next_page_token"] = token
        return body

    def items(self, operation_id: str, params: Mapping[str, str]) -> dict:
        """GET /operations/{id}/items?state=failed&page_size=&page_token=: the kept failed items, paged."""
        record = self.get(operation_id)
        return items.page(record.id, record.failed_items, record.items, params)

    def request_cancel(self, operation_id: str, body: Any, requested_by: str | None = None) -> dict:
        """Queue a cancel command; `handle` carries it out (contract §4, §7).

        `requested_by` is the caller's verified identity (functions.adapters.caller), never
        the body's: a `requested_by` in the body (older clients sent one) is ignored."""
        record = self.get(operation_id)
        body = body or {}
        if not isinstance(body, Mapping) or set(body) - {"reason", "requested_by"}:
            raise InvalidArgument("the cancel body may hold only reason")
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1024):
            raise InvalidArgument("reason must be a string of at most 1024 characters")
        unsupported = record.ref.cannot("cancel")
        if unsupported:  # answered at once: nothing is sent, so nothing is recorded as refused by the API
            raise FailedPrecondition(unsupported)
        command = events.cancel_command(record.id, reason, requested_by, request_id=uuid.uuid4().hex)
        message_id = self._publisher.publish_one(self._settings.topic_path(self._settings.commands_topic), command)
        log.info("cancel requested", extra={"operation_id": record.id, "operation": record.name})
        return {"id": record.id, "name": record.name, "state": record.state.value,
                "cancel": "requested", "message_id": message_id}
