"""The HTTP surface of `submit` and `poll` (contract §1, §3, §4).

Maps requests to the services and every failure to Google's error body; a
bug or an unavailable dependency becomes a 5xx, bad input always a 4xx.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from google.api_core import exceptions as gexc

from functions.adapters.caller import caller_identity
from functions.adapters.pubsub_push import Undecodable, drop_poison, envelope_message
from functions.domain import catalog, jsontext, runs
from functions.domain.errors import (
    InvalidArgument, LroError, MethodNotAllowed, NotFound, PayloadTooLarge, TransientError,
    UnsupportedMediaType)
from functions.domain.names import resolve_service

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_SCHEDULE_TIME = re.compile(r"^[0-9T:.+Z-]+$")
_OPERATION_PATH = re.compile(r"^/operations/(?P<id>[^/:]+)(?P<suffix>:cancel|/items)?$")
_SERVICE_PATH = re.compile(r"^/services(?:/(?P<name>[^/]+))?$")

Response = tuple[dict, int, dict]


def submit_routes(request, service) -> Response:
    """POST / or /operations; GET /operations[/{id}[/items]]; POST /operations/{id}:cancel; GET /services[/{name}]."""
    def route() -> Response:
        path = request.path.rstrip("/") or "/"
        services = _SERVICE_PATH.match(path)
        if services:
            if request.method != "GET":
                raise MethodNotAllowed(f"{path} is read-only (GET)")
            return _json(published_services(services["name"]))
        if path in ("/", "/operations"):
            if request.method == "POST":
                record, created = service.submit(read_json(request, required=True))
                return _json(record.to_json(), 201 if created else 200)
            if request.method == "GET" and path == "/operations":
                return _json(service.list(request.args.to_dict()))
            raise MethodNotAllowed(f"{request.method} is not supported on {path}")
        match = _OPERATION_PATH.match(path)
        if not match:
            raise NotFound(f"no such resource: {path[:200]}")
        if match["suffix"] == "/items":
            if request.method != "GET":
                raise MethodNotAllowed("the failed items are GET /operations/{id}/items?state=failed")
            return _json(service.items(match["id"], request.args.to_dict()))
        if match["suffix"]:
            if request.method != "POST":
                raise MethodNotAllowed("cancel is POST /operations/{id}:cancel")
            return _json(service.request_cancel(match["id"], read_json(request, required=False),
                                                requested_by=caller_identity(request.headers)), 202)
        if request.method != "GET":
            raise MethodNotAllowed(f"{request.method} is not supported on /operations/{{id}}")
        return _json(service.get(match["id"]).to_json())

    return guarded(route)


def published_services(name: str | None) -> dict:
    """GET /services: the catalog (each API, its name patterns, endpoints and capabilities)."""
    if name is None:
        return catalog.load().to_json()
    try:
        return resolve_service(name).to_json()
    except InvalidArgument as exc:
        raise NotFound(exc.message) from exc


def poll_route(request, service) -> Response:
    """A run from Cloud Scheduler (plain JSON body) or a shard run from Pub/Sub (push envelope)."""
    def route() -> Response:
        if request.method != "POST":
            raise MethodNotAllowed("poll is POST")
        body = read_json(request, required=False) or {}
        if isinstance(body, dict) and "message" in body:
            return _shard_message(body, service)
        budget, shard = _run_args(body)
        # Cloud Scheduler names the tick an attempt belongs to: a retry of a run still going is a duplicate.
        schedule_time = request.headers.get("X-CloudScheduler-ScheduleTime") or None
        if schedule_time is not None and (len(schedule_time) > 64 or not _SCHEDULE_TIME.match(schedule_time)):
            raise InvalidArgument("X-CloudScheduler-ScheduleTime must be an RFC 3339 time")
        return _json(service.run(budget, shard, schedule_time=schedule_time).to_json())

    return guarded(route)


def _shard_message(envelope: dict, service) -> Response:
    """A shard run requested by another run over Pub/Sub push.

    A message that can never run is acknowledged (2xx) and logged at ERROR: a
    4xx would only have Pub/Sub redeliver it until it dead-letters. Failures of
    the run itself still answer 5xx (guarded), so Pub/Sub retries those.
    """
    try:
        data, _attributes, _ = envelope_message(envelope)
        # A message always names its shard: an unsharded run could fan out again.
        if not isinstance(data, dict) or data.get("type") != runs.SHARD_MESSAGE_TYPE or data.get("shard") is None:
            raise InvalidArgument(f'a shard run message is {{"type": "{runs.SHARD_MESSAGE_TYPE}", "shard": K, '
                                  '"budget_s": N, "requested_at": T}')
        budget, shard = _run_args({k: v for k, v in data.items() if k not in ("type", "requested_at")})
    except (Undecodable, InvalidArgument) as exc:
        drop_poison(envelope, exc)
        return _json({"dropped": (getattr(exc, "message", None) or str(exc))[:300]})
    return _json(service.run(budget, shard).to_json())


def _run_args(body) -> tuple[float | None, int | None]:
    """(budget_s, shard) of a run request; InvalidArgument when malformed."""
    if not isinstance(body, dict) or set(body) - {"budget_s", "shard"}:
        raise InvalidArgument("poll takes an optional body {\"budget_s\": N, \"shard\": K}")
    budget = body.get("budget_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not 0 < budget <= 3600):
        raise InvalidArgument("budget_s must be a number of seconds between 0 and 3600")
    shard = body.get("shard")
    if shard is not None and (isinstance(shard, bool) or not isinstance(shard, int) or shard < 0):
        raise InvalidArgument("shard must be a non-negative whole number")
    return budget, shard


def guarded(route) -> Response:
    try:
        return route()
    except LroError as exc:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc.message)
        return _json(exc.to_body(), exc.http_status)
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted, gexc.InternalServerError,
            gexc.TooManyRequests, gexc.RetryError) as exc:
        log.error("a dependency is unavailable: %s", exc)
        return _json(TransientError("a dependency is unavailable; retry later").to_body(), 503)
    except Exception:
        log.exception("unexpected error")
        return _json({"error": {"code": 500, "status": "INTERNAL", "message": "internal error"}}, 500)


def read_json(request, *, required: bool) -> Any:
    """The JSON body within limits: 413 oversized, 415 not JSON, 400 malformed."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise InvalidArgument("a JSON body is required")
        return None
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    try:
        return jsontext.loads(raw, text_only=True)
    except (jsontext.JsonTooDeep, jsontext.JsonNotText) as exc:
        raise InvalidArgument(f"the body is not acceptable JSON: {exc}") from exc
    except ValueError as exc:  # UnicodeDecodeError among them
        raise InvalidArgument(f"the body is not valid JSON: {str(exc)[:120]}") from exc


def _json(body: dict, status: int = 200) -> Response:
    return body, status, {"Content-Type": "application/json"}
