"""Operation scripts and what a scripted operation looks like at time t.

Pure: no I/O, no clock, no locks. The server owns time and mutable state
(when a cancel arrived, whether the op was expired by hand) and passes them in.

A script is a timeline from the operation's creation (`created_ago_s` before
the script is posted: one started elsewhere and handed to lrowatch later):
queued for `queued_s`, running for `running_s`, then done with `outcome`. A
cancel request (unless `ignore_cancel`) cuts the run short: the op finishes
CANCELLED `cancel_delay_s` after the request.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from functions.domain import catalog

KINDS = ("vision", "documentai", "generic", "vertex", "firestore")
OUTCOMES = ("succeeded", "failed", "cancelled", "done_without_result")

_TYPE_PREFIX = "type.googleapis.com/"
VISION_METADATA = _TYPE_PREFIX + "google.cloud.vision.v1.BatchOperationMetadata"
VISION_IMPORT_RESPONSE = _TYPE_PREFIX + "google.cloud.vision.v1.ImportProductSetsResponse"
EMPTY = _TYPE_PREFIX + "google.protobuf.Empty"
DOCAI_METADATA = _TYPE_PREFIX + "google.cloud.documentai.v1.BatchProcessMetadata"
DOCAI_RESPONSE = _TYPE_PREFIX + "google.cloud.documentai.v1.BatchProcessResponse"
SPEECH_METADATA = _TYPE_PREFIX + "google.cloud.speech.v1.LongRunningRecognizeMetadata"
SPEECH_RESPONSE = _TYPE_PREFIX + "google.cloud.speech.v1.LongRunningRecognizeResponse"
VERTEX_METADATA = _TYPE_PREFIX + "google.cloud.aiplatform.v1.ImportDataOperationMetadata"
VERTEX_RESPONSE = _TYPE_PREFIX + "google.cloud.aiplatform.v1.ImportDataResponse"
FIRESTORE_METADATA = _TYPE_PREFIX + "google.firestore.admin.v1.ExportDocumentsMetadata"
FIRESTORE_RESPONSE = _TYPE_PREFIX + "google.firestore.admin.v1.ExportDocumentsResponse"

DEFAULT_TYPE = {
    "vision": "IMPORT_PRODUCT_SETS",
    "documentai": "BATCH_PROCESS_DOCUMENTS",
    "generic": "LONG_RUNNING_RECOGNIZE",
    "vertex": "IMPORT_DATA",
    "firestore": "EXPORT_DOCUMENTS",
}
DEFAULT_HOST = {
    "vision": "vision.googleapis.com",
    "documentai": "us-documentai.googleapis.com",
    "generic": "speech.googleapis.com",
    "vertex": "us-central1-aiplatform.googleapis.com",
    "firestore": "firestore.googleapis.com",
}
DEFAULT_LOCATION = {"vision": "us-west1", "documentai": "us", "generic": "global", "vertex": "us-central1",
                    "firestore": "global"}
# Which metadata family an API's operations look like (anything else: generic, progressPercent).
FAMILY = {"vision": "vision", "documentai": "documentai", "aiplatform": "vertex", "firestore": "firestore",
          "datastore": "firestore"}


def family_of(api: str) -> str:
    return FAMILY.get(api, "generic")

CANCELLED_ERROR = {"code": 1, "message": "Operation was cancelled."}
DEFAULT_FAILURE = {"code": 13, "message": "Internal error encountered."}

# google.rpc.Code → HTTP status and back; used for error bodies and faults.
HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 409: "ABORTED", 412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FAULT_KINDS = ("timeout", "garbage", "reset")

HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.googleapis\.com$")
OP_NAME_RE = re.compile(r"^(?:(?P<parent>.+)/)?operations/(?P<id>[^/:]+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9(][A-Za-z0-9_~.()/-]*$")
_VERSION_SEGMENT = re.compile(r"^v\d+(?:p\d+)?(?:(?:alpha|beta)\d*)?$")


def url_prefixes(host: str, path: str) -> list[str]:
    """Where names start in a request path on `host`, longest first: the published
    prefixes of the host's API (v1, dns/v1, v1/operations …), else the version segment."""
    found = catalog.load().by_host(host)
    prefixes = {f.prefix for f in found[0].forms} if found else set()
    first = path.split("/", 1)[0]
    if _VERSION_SEGMENT.match(first):
        prefixes.add(first)
    return sorted(prefixes, key=len, reverse=True)


def catalog_form(host: str, version: str, name: str) -> catalog.Form | None:
    """The published form a scripted name belongs to on `host`, if any."""
    found = catalog.load().by_host(host)
    if found is None:
        return None
    forms = [f for f in found[0].forms_of(version) if f.matches(name)]
    return max(forms, key=lambda f: f.specificity) if forms else None


class ScriptError(ValueError):
    """A script (or fault or filter) the simulator refuses: becomes a 400."""


@dataclass(frozen=True)
class Fault:
    """A scripted fault on one operation: the first `times` matching requests fail."""
    status: int | None = None      # an HTTP error status, or
    kind: str | None = None        # one of FAULT_KINDS
    times: int = 1
    on: str = "get"                # "get" | "cancel" | "any"
    retry_after_s: float | None = None

    def applies_to(self, method: str) -> bool:
        return self.on == "any" or self.on == method


@dataclass(frozen=True)
class Script:
    host: str
    kind: str
    name: str
    type: str
    created_at: float
    version: str = "v1"
    prefix: str = ""  # URL path before the name when not the version (dns/v1, v1/operations)
    queued_s: float = 0.0
    running_s: float = 2.0
    outcome: str = "succeeded"
    error: Mapping[str, Any] | None = None
    items: int = 0
    failed_items: int = 0
    human_review_errors: int = 0
    ignore_cancel: bool = False
    cancel_delay_s: float = 1.0
    expire_after_s: float | None = None
    faults: tuple[Fault, ...] = ()

    @property
    def parent(self) -> str:
        match = OP_NAME_RE.match(self.name)
        return (match.group("parent") or "") if match else ""

    @property
    def op_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def url(self) -> str:
        return f"https://{self.host}/{self.prefix or self.version}/{self.name}"


# ---------------------------------------------------------------- parsing

def _number(body: Mapping, key: str, default: float, *, allow_none: bool = False) -> float | None:
    value = body.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScriptError(f"{key} must be a non-negative number")
    return float(value)


def _count(body: Mapping, key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScriptError(f"{key} must be a non-negative integer")
    return value


def parse_fault(raw: Any) -> Fault:
    if not isinstance(raw, Mapping):
        raise ScriptError("each fault must be an object")
    status, kind = raw.get("status"), raw.get("kind")
    if (status is None) == (kind is None):
        raise ScriptError("a fault needs exactly one of status or kind")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise ScriptError("fault status must be an HTTP error status (400-599)")
    if kind is not None and kind not in FAULT_KINDS:
        raise ScriptError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
    times = raw.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ScriptError("fault times must be a positive integer")
    on = raw.get("on", "get")
    if on not in ("get", "cancel", "any"):
        raise ScriptError("fault on must be get, cancel or any")
    return Fault(status=status, kind=kind, times=times, on=on,
                 retry_after_s=_number(raw, "retry_after_s", None, allow_none=True))


def parse_script(body: Any, *, now: float, new_id: Callable[[], str]) -> Script:
    """Validate an admin request body and build its Script (created at `now`)."""
    if not isinstance(body, Mapping):
        raise ScriptError("an operation script must be a JSON object")
    kind = body.get("kind", "generic")
    if kind not in KINDS:
        raise ScriptError(f"kind must be one of {', '.join(KINDS)}")
    host = body.get("host") or DEFAULT_HOST[kind]
    if not isinstance(host, str) or not HOST_RE.match(host):
        raise ScriptError("host must be a *.googleapis.com host name")
    name = body.get("name")
    if name is None:
        project = str(body.get("project", "123456"))
        location = str(body.get("location") or _location_from_host(host) or DEFAULT_LOCATION[kind])
        name = f"projects/{project}/locations/{location}/operations/{new_id()}"
    version = body.get("version", "v1")
    if not isinstance(version, str):
        raise ScriptError("type and version must be strings")
    if not isinstance(name, str) or not _NAME_RE.match(name) or "//" in name or name.endswith("/"):
        raise ScriptError("name must be an operation name")
    form = catalog_form(host, version, name)
    if form is None and not OP_NAME_RE.match(name):
        raise ScriptError("name must end in operations/{id} or fit a published pattern of the host's API")
    outcome = body.get("outcome", "succeeded")
    if outcome not in OUTCOMES:
        raise ScriptError(f"outcome must be one of {', '.join(OUTCOMES)}")
    error = body.get("error")
    if error is not None and not (isinstance(error, Mapping) and isinstance(error.get("code"), int)):
        raise ScriptError("error must be a google.rpc.Status object with an integer code")
    items, failed = _count(body, "items"), _count(body, "failed_items")
    reviews = _count(body, "human_review_errors")
    if failed > items or reviews > items:
        raise ScriptError("failed_items and human_review_errors cannot exceed items")
    faults = body.get("faults") or []
    if not isinstance(faults, list):
        raise ScriptError("faults must be a list")
    op_type = body.get("type") or DEFAULT_TYPE[kind]
    if not isinstance(op_type, str):
        raise ScriptError("type and version must be strings")
    return Script(
        host=host, kind=kind, name=name, type=op_type, created_at=now - _number(body, "created_ago_s", 0.0),
        version=version,
        prefix=form.prefix if form is not None else "",
        queued_s=_number(body, "queued_s", 0.0), running_s=_number(body, "running_s", 2.0),
        outcome=outcome, error=dict(error) if error else None,
        items=items, failed_items=failed, human_review_errors=reviews,
        ignore_cancel=bool(body.get("ignore_cancel", False)),
        cancel_delay_s=_number(body, "cancel_delay_s", 1.0),
        expire_after_s=_number(body, "expire_after_s", None, allow_none=True),
        faults=tuple(parse_fault(f) for f in faults),
    )


def _location_from_host(host: str) -> str | None:
    # Regional endpoints (us-documentai..., documentai.eu.rep...) imply the location in the name.
    found = catalog.load().by_host(host)
    if found is not None:
        return found[1]
    prefix = host.split(".", 1)[0]
    return prefix.split("-", 1)[0] if "-" in prefix else None


# ---------------------------------------------------------------- timeline

@dataclass(frozen=True)
class Timeline:
    started_at: float
    ended_at: float
    outcome: str
    cancelling_from: float | None  # set when a cancel cut the run short


def timeline(script: Script, cancel_at: float | None) -> Timeline:
    started = script.created_at + script.queued_s
    natural_end = started + script.running_s
    if cancel_at is not None and not script.ignore_cancel and cancel_at < natural_end:
        return Timeline(started, cancel_at + script.cancel_delay_s, "cancelled", cancel_at)
    return Timeline(started, natural_end, script.outcome, None)


def phase(script: Script, cancel_at: float | None, now: float) -> str:
    """queued | running | cancelling | done"""
    tl = timeline(script, cancel_at)
    if now >= tl.ended_at:
        return "done"
    if tl.cancelling_from is not None and now >= tl.cancelling_from:
        return "cancelling"
    return "running" if now >= tl.started_at else "queued"


def is_done(script: Script, cancel_at: float | None, now: float) -> bool:
    return phase(script, cancel_at, now) == "done"


def is_expired(script: Script, cancel_at: float | None, now: float, expired_by_hand: bool = False) -> bool:
    if expired_by_hand:
        return True
    if script.expire_after_s is None:
        return False
    return now >= timeline(script, cancel_at).ended_at + script.expire_after_s


def next_fault(faults: tuple[Fault, ...], used: list[int], method: str) -> int | None:
    """Index of the first scripted fault still due for this method, or None."""
    for i, fault in enumerate(faults):
        if fault.applies_to(method) and used[i] < fault.times:
            return i
    return None


# ---------------------------------------------------------------- rendering

def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render(script: Script, cancel_at: float | None, now: float) -> dict:
    """The google.longrunning.Operation JSON for this script at time `now`."""
    tl = timeline(script, cancel_at)
    ph = phase(script, cancel_at, now)
    outcome = tl.outcome if ph == "done" else None
    op: dict[str, Any] = {"name": script.name,
                          "metadata": _METADATA[script.kind](script, tl, ph, outcome, now),
                          "done": ph == "done"}
    if outcome == "succeeded":
        op["response"] = _RESPONSE[script.kind](script)
    elif outcome == "failed":
        op["error"] = dict(script.error or DEFAULT_FAILURE)
    elif outcome == "cancelled":
        op["error"] = dict(CANCELLED_ERROR)
    return op  # done_without_result: neither response nor error


def _vision_metadata(script: Script, tl: Timeline, ph: str, outcome: str | None, now: float) -> dict:
    md = {"@type": VISION_METADATA, "submitTime": rfc3339(script.created_at)}
    if ph != "done":
        md["state"] = "PROCESSING"  # Vision has no queued or cancelling state
        return md
    md["endTime"] = rfc3339(tl.ended_at)
    if outcome == "succeeded":
        # SUCCESSFUL means at least one item went through.
        all_failed = script.items > 0 and script.failed_items == script.items
        md["state"] = "FAILED" if all_failed else "SUCCESSFUL"
    elif outcome == "failed":
        md["state"] = "FAILED"
    elif outcome == "cancelled":
        md["state"] = "CANCELLED"
    return md


def _vision_response(script: Script) -> dict:
    if script.type != "IMPORT_PRODUCT_SETS":
        return {"@type": EMPTY}  # e.g. PURGE_PRODUCTS returns google.protobuf.Empty
    location_path = script.parent or "projects/123456/locations/us-west1"
    images, statuses = [], []
    for i in range(script.items):
        if i < script.failed_items:
            statuses.append({"code": 3, "message": f"Image gs://sim-input/img-{i}.jpg could not be read."})
        else:
            statuses.append({})  # google.rpc.Status with code 0 (OK) renders empty
            images.append({"name": f"{location_path}/products/product-{i}/referenceImages/image-{i}",
                           "uri": f"gs://sim-input/img-{i}.jpg"})
    return {"@type": VISION_IMPORT_RESPONSE, "referenceImages": images, "statuses": statuses}


_DOCAI_STATE = {"queued": "WAITING", "running": "RUNNING", "cancelling": "CANCELLING"}
_DOCAI_DONE = {"succeeded": "SUCCEEDED", "failed": "FAILED", "cancelled": "CANCELLED"}


def _documentai_metadata(script: Script, tl: Timeline, ph: str, outcome: str | None, now: float) -> dict:
    changes = [script.created_at, tl.started_at, tl.cancelling_from or script.created_at, tl.ended_at]
    updated = max(t for t in changes if t <= now) if now >= script.created_at else script.created_at
    md = {"@type": DOCAI_METADATA, "createTime": rfc3339(script.created_at), "updateTime": rfc3339(updated)}
    if ph != "done":
        md["state"] = _DOCAI_STATE[ph]
        return md
    if outcome in _DOCAI_DONE:
        md["state"] = _DOCAI_DONE[outcome]
    if outcome == "failed":
        md["stateMessage"] = (script.error or DEFAULT_FAILURE).get("message", "")
    elif outcome == "cancelled":
        md["stateMessage"] = CANCELLED_ERROR["message"]
    if outcome in ("succeeded", "failed") and script.items:
        md["individualProcessStatuses"] = [_document_status(script, i) for i in range(script.items)]
    return md


def _document_status(script: Script, i: int) -> dict:
    source = f"gs://sim-input/{script.op_id}/doc-{i}.pdf"
    if i < script.failed_items:
        return {"inputGcsSource": source,
                "status": {"code": 3, "message": "Unsupported input file format."},
                "humanReviewStatus": {"state": "SKIPPED"}}
    # Human review errors land on documents that otherwise succeeded.
    review_error = i >= script.items - script.human_review_errors
    review = ({"state": "ERROR", "stateMessage": "Human review could not be started."} if review_error
              else {"state": "SKIPPED", "stateMessage": "HumanReviewConfig is not enabled."})
    return {"inputGcsSource": source, "status": {},
            "outputGcsDestination": f"gs://sim-output/{script.op_id}/{i}",
            "humanReviewStatus": review}


def _generic_metadata(script: Script, tl: Timeline, ph: str, outcome: str | None, now: float) -> dict:
    md = {"@type": SPEECH_METADATA, "progressPercent": _progress(script, tl, outcome, now),
          "startTime": rfc3339(tl.started_at if now >= tl.started_at else script.created_at),
          "lastUpdateTime": rfc3339(min(now, tl.ended_at))}
    return md


def _progress(script: Script, tl: Timeline, outcome: str | None, now: float) -> int:
    """Grows linearly while running and freezes where the run stopped."""
    stop = min(now, tl.cancelling_from if tl.cancelling_from is not None else tl.ended_at)
    if outcome == "succeeded":
        return 100
    if stop <= tl.started_at or script.running_s == 0:
        return 0
    return min(99, int(100 * (stop - tl.started_at) / script.running_s))


def _vertex_metadata(script: Script, tl: Timeline, ph: str, outcome: str | None, now: float) -> dict:
    # Vertex AI: GenericOperationMetadata; per-file failures are listed (at most 20) in partialFailures.
    generic = {"createTime": rfc3339(script.created_at), "updateTime": rfc3339(min(now, tl.ended_at))}
    failures = [{"code": 3, "message": f"gs://sim-input/{script.op_id}/file-{i}.jsonl could not be read."}
                for i in range(min(script.failed_items, 20))]
    if failures and ph != "queued":
        generic["partialFailures"] = failures
    return {"@type": VERTEX_METADATA, "genericMetadata": generic}


_FIRESTORE_STATE = {"queued": "INITIALIZING", "running": "PROCESSING", "cancelling": "CANCELLING"}
_FIRESTORE_DONE = {"succeeded": "SUCCESSFUL", "failed": "FAILED", "cancelled": "CANCELLED"}


def _firestore_metadata(script: Script, tl: Timeline, ph: str, outcome: str | None, now: float) -> dict:
    # Firestore admin: operationState plus int64 work counters, which proto3 JSON renders as strings.
    estimated = max(script.items, 1) * 1000
    done_work = estimated * _progress(script, tl, outcome, now) // 100
    return {"@type": FIRESTORE_METADATA, "startTime": rfc3339(tl.started_at),
            "operationState": _FIRESTORE_DONE.get(outcome, "FAILED") if ph == "done" else _FIRESTORE_STATE[ph],
            "progressDocuments": {"completedWork": str(done_work), "estimatedWork": str(estimated)},
            "outputUriPrefix": f"gs://sim-output/{script.op_id}"}


_METADATA = {"vision": _vision_metadata, "documentai": _documentai_metadata, "generic": _generic_metadata,
             "vertex": _vertex_metadata, "firestore": _firestore_metadata}
_RESPONSE = {
    "vision": _vision_response,
    "documentai": lambda s: {"@type": DOCAI_RESPONSE},
    "generic": lambda s: {"@type": SPEECH_RESPONSE},
    "vertex": lambda s: {"@type": VERTEX_RESPONSE},
    "firestore": lambda s: {"@type": FIRESTORE_RESPONSE, "outputUriPrefix": f"gs://sim-output/{s.op_id}"},
}


# ---------------------------------------------------------------- list filter

_FILTER_TERM = re.compile(r'^\s*(?P<key>[A-Za-z_.]+)\s*=\s*"?(?P<value>[^"\s]+)"?\s*$')


@dataclass(frozen=True)
class Filter:
    type: str | None = None
    done: bool | None = None

    def matches(self, script: Script, op: Mapping[str, Any]) -> bool:
        if self.type is not None and script.type != self.type:
            return False
        return self.done is None or op["done"] is self.done


def parse_filter(text: str | None) -> Filter:
    """`TYPE=X`, `done=true|false`, joined with AND. Anything else is refused."""
    if not text or not text.strip():
        return Filter()
    values: dict[str, Any] = {}
    for term in re.split(r"\s+AND\s+", text.strip()):
        m = _FILTER_TERM.match(term)
        if not m:
            raise ScriptError(f"Invalid filter: {text!r}")
        key, value = m.group("key").lower(), m.group("value")
        if key == "type":
            values["type"] = value
        elif key == "done" and value.lower() in ("true", "false"):
            values["done"] = value.lower() == "true"
        else:
            raise ScriptError(f"Unsupported filter term: {term.strip()!r}")
    return Filter(**values)
