"""Turning what a user has at hand into a submission or a record id.

A user may hold an operation's name (plus its service), the URL Google's docs
print, or the JSON an API answered when it started the operation. The service
validates everything again; this only shapes the request and infers what it can.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from functions.cli.errors import UsageError
from functions.domain.errors import InvalidArgument
from functions.domain.names import REGISTRY, build_ref, is_api_version, is_operation_id, parse_url



def operation_id(value: str, service: str | None = None) -> str:
    """A record id from an id, a doc-style URL, or a name with --service."""
    if is_operation_id(value):
        return value
    try:
        if value.startswith("https://"):
            return parse_url(value).id
        if service:
            return build_ref(value, service).id
    except InvalidArgument as exc:
        raise UsageError(exc.message) from exc
    raise UsageError(f"{value[:80]!r} is not an operation id",
                     "give the 32-character id, the operation's URL, or its name with --service")


def from_operation_json(text: str) -> dict:
    """`{"name": …, "metadata": {"@type": "type.googleapis.com/google.cloud.documentai.v1.…"}}`
    → name, service and api_version (the regional endpoint follows from the name)."""
    try:
        operation = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--from-json: not JSON ({exc})") from exc
    if not isinstance(operation, dict) or not isinstance(operation.get("name"), str):
        raise UsageError("--from-json: expected an operation object with a \"name\"",
                         "pass the JSON the API returned when it started the operation")
    submission: dict[str, Any] = {"name": operation["name"]}
    type_url = (operation.get("metadata") or {}).get("@type") if isinstance(operation.get("metadata"), dict) else None
    service, version = service_of_type(type_url) if isinstance(type_url, str) else (None, None)
    if service:
        submission["service"] = service
    if version:
        submission["api_version"] = version
    return submission


def service_of_type(type_url: str) -> tuple[str | None, str | None]:
    """`type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata` → ("documentai", "v1");
    `…/google.firestore.admin.v1.…` → ("firestore", "v1"). Unknown packages → (None, None)."""
    package = type_url.rsplit("/", 1)[-1].split(".")[:-1]  # drop the message name
    service = next((part for part in package if part in REGISTRY), None)
    version = next((part for part in package if is_api_version(part)), None)
    # A version whose operations the API doesn't publish is left to the name to choose.
    return service, (version if service and version in REGISTRY[service].versions else None)


def read_json_arg(path: str) -> str:
    """The text of FILE, or of stdin for `-`."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def labels(pairs: list[str] | None) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {pair!r} is not KEY=VALUE", "e.g. --label team=ocr")
        result[key] = value
    return result


def policy(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--policy is not JSON ({exc})", "e.g. --policy '{\"initial_delay_s\": 0}'") from exc
    if not isinstance(value, dict):
        raise UsageError("--policy must be a JSON object", "e.g. --policy '{\"max_delay_s\": 60}'")
    return value
