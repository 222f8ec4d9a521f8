"""Validating a submission (contract §3) into a new Record. Pure: no I/O."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from functions.domain import jsontext
from functions.domain.errors import InvalidArgument
from functions.domain.names import build_ref, parse_url
from functions.domain.parents import check_allowed
from functions.domain.policy import Policy
from functions.domain.record import Record

_FIELDS = {
    "name", "service", "api_version", "url", "quota_project", "labels", "correlation_id",
    "notify_topic", "notify_url", "policy",
}
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})\Z")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}\Z")
_TOPIC = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}\Z")
_URL_CHARS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+\Z")  # printable ASCII without space and backslash
_CORRELATION = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,255}\Z")
MAX_LABELS = 64


def parse_submission(
    raw: Any,
    now: datetime,
    *,
    default_policy: Policy,
    notify_url_prefixes: tuple[str, ...],
    shards: int,
    source: str = "submit",
    allowed_parents: tuple[str, ...] | None = None,
) -> Record:
    """A new Record from a submission: InvalidArgument if malformed, PermissionDenied if it
    names a project outside `allowed_parents` (None: any)."""
    if not isinstance(raw, Mapping):
        raise InvalidArgument("the submission must be a JSON object")
    if not jsontext.is_text(raw):
        raise InvalidArgument("the submission holds a string that is not valid Unicode (a lone surrogate)")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise InvalidArgument(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:300]}")
    if "url" in raw:
        if "name" in raw or "service" in raw:
            raise InvalidArgument("give either url, or name and service, not both")
        ref = parse_url(raw["url"])
        if raw.get("api_version") not in (None, ref.api_version):
            raise InvalidArgument("api_version does not match the url")
    else:
        if "name" not in raw or "service" not in raw:
            raise InvalidArgument("name and service are required (or give url)")
        ref = build_ref(raw["name"], raw["service"], raw.get("api_version"))
    quota_project = _optional(raw, "quota_project", _quota_project)
    notify_topic = _optional(raw, "notify_topic", _notify_topic)
    notify_url = _optional(raw, "notify_url", lambda v: check_notify_url(v, notify_url_prefixes))
    labels, correlation_id = _labels(raw.get("labels")), _optional(raw, "correlation_id", _correlation_id)
    policy = Policy.from_dict(raw.get("policy"), base=default_policy)
    check_allowed(allowed_parents, name=ref.name, quota_project=quota_project, notify_topic=notify_topic)
    first_delay = policy.initial_delay_s  # no jitter on the first poll: 0 means at once
    return Record(
        id=ref.id,
        name=ref.name,
        service=ref.service,
        api_version=ref.api_version,
        endpoint=ref.endpoint,
        submitted_at=now,
        updated_at=now,
        next_poll_at=now + timedelta(seconds=first_delay),
        deadline_at=now + timedelta(seconds=policy.deadline_s),
        shard=int(ref.id[:8], 16) % max(shards, 1),
        policy=policy.to_dict(),
        quota_project=quota_project,
        labels=labels,
        correlation_id=correlation_id,
        notify_topic=notify_topic,
        notify_url=notify_url,
        source=source,
    )


_SETTINGS = ("quota_project", "labels", "correlation_id", "notify_topic", "notify_url")


def differing_settings(raw: Mapping, new: Record, existing: Record) -> list[str]:
    """The settings a resubmission gives that differ from the tracked record's. Settings it
    leaves out are not compared: resubmitting just the name (or url) is always the same."""
    differing = [f for f in _SETTINGS if raw.get(f) is not None and getattr(new, f) != getattr(existing, f)]
    if (raw.get("api_version") is not None or "url" in raw) and new.api_version != existing.api_version:
        differing.append("api_version")
    given = raw.get("policy") or {}
    differing += [f"policy.{k}" for k in sorted(given) if new.policy.get(k) != existing.policy.get(k)]
    return differing


def _optional(raw: Mapping, key: str, check) -> Any:
    value = raw.get(key)
    return None if value is None else check(value)


def _quota_project(value: Any) -> str:
    if not isinstance(value, str) or not _PROJECT.match(value):
        raise InvalidArgument("quota_project must be a project id or number")
    return value


def _correlation_id(value: Any) -> str:
    if not isinstance(value, str) or not _CORRELATION.match(value):
        raise InvalidArgument("correlation_id must be 1-256 printable ASCII characters")
    return value


def _notify_topic(value: Any) -> str:
    if not isinstance(value, str) or not _TOPIC.match(value):
        raise InvalidArgument("notify_topic must be a full topic path projects/P/topics/T")
    return value


def _labels(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > MAX_LABELS:
        raise InvalidArgument(f"labels must be an object of at most {MAX_LABELS} entries")
    for key, item in value.items():
        if not valid_label(key, item):
            raise InvalidArgument(LABEL_RULES)
    return dict(value)


LABEL_RULES = "labels follow Google Cloud label rules: lowercase keys and values, digits, - and _"


def valid_label(key: Any, value: Any) -> bool:
    """A Google Cloud label: also what keeps a key safe inside a Firestore field path."""
    return (isinstance(key, str) and bool(_LABEL_KEY.match(key))
            and isinstance(value, str) and bool(_LABEL_VALUE.match(value)))


def check_notify_url(value: Any, prefixes: tuple[str, ...]) -> str:
    """https only, no userinfo, and under one of the configured prefixes."""
    if not isinstance(value, str) or len(value) > 2048 or not _URL_CHARS.match(value):
        # Printable ASCII only: control characters (\x0b, \x7f …) and spaces are what URL
        # parsers disagree on; anything else must be percent-encoded.
        raise InvalidArgument("notify_url must be an https URL of printable ASCII characters (no spaces, "
                              "no backslashes; percent-encode anything else)")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. "https://[::1/x": invalid IPv6 literal
        raise InvalidArgument("notify_url must be an https URL") from exc
    if parts.scheme != "https" or not hostname or "@" in parts.netloc or parts.fragment:
        raise InvalidArgument("notify_url must be an https URL without credentials or fragment")
    if {".", ".."} & set(unquote(parts.path).split("/")):
        # HTTP clients resolve dot segments, which would step outside a path prefix.
        raise InvalidArgument("notify_url must not contain . or .. path segments")
    if not any(_under_prefix(value, prefix) for prefix in prefixes):
        raise InvalidArgument("notify_url is not in the configured allowlist (LRO_NOTIFY_URL_PREFIXES)")
    return value


def _under_prefix(url: str, prefix: str) -> bool:
    # A prefix ending in a host ("https://a.run.app") must not admit "https://a.run.app.evil.com".
    if not url.startswith(prefix):
        return False
    if prefix.endswith("/"):
        return True
    rest = url[len(prefix):]
    return rest == "" or rest[0] in "/?"
