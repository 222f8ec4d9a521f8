"""Small factories for domain tests: records, operation JSON, API failures.

Everything here is pure data; no I/O.
"""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from functions.domain.adaptive import DurationStats
from functions.domain.names import build_ref
from functions.domain.policy import Policy
from functions.domain.record import Record
from functions.domain.states import State
from functions.domain.tracking import ApiFailure, after_poll

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

DOCAI_NAME = "projects/123/locations/us/operations/bc4e1d412863e626"
DOCAI_SERVICE = "documentai.googleapis.com"
VISION_NAME = "projects/my-project/locations/us-east1/operations/f1b2c3d4"
VISION_SERVICE = "vision.googleapis.com"

VISION_BATCH_METADATA = "type.googleapis.com/google.cloud.vision.v1.BatchOperationMetadata"
DOCAI_BATCH_METADATA = "type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata"


def make_record(
    *,
    name: str = DOCAI_NAME,
    service: str = DOCAI_SERVICE,
    state: State = State.PENDING,
    submitted_at: datetime = NOW,
    deadline_s: float = 86400.0,
    policy: Policy | dict | None = None,
    **changes: Any,
) -> Record:
    """A record as `parse_submission` would build it, then with `changes` applied."""
    ref = build_ref(name, service)
    if policy is None:
        policy = Policy(jitter=0.0)
    policy_dict = policy.to_dict() if isinstance(policy, Policy) else dict(policy)
    record = Record(
        id=ref.id,
        name=ref.name,
        service=ref.service,
        api_version=ref.api_version,
        endpoint=ref.endpoint,
        submitted_at=submitted_at,
        updated_at=submitted_at,
        next_poll_at=submitted_at,
        deadline_at=submitted_at + timedelta(seconds=deadline_s),
        policy=policy_dict,
        state=state,
    )
    return record.with_changes(**changes) if changes else record


def operation(
    *,
    name: str = DOCAI_NAME,
    done: bool | None = None,
    metadata: dict | None = None,
    response: dict | None = None,
    error: dict | None = None,
    **extra: Any,
) -> dict:
    """A google.longrunning.Operation in its REST JSON form; omitted keys stay absent."""
    op: dict[str, Any] = {"name": name}
    if metadata is not None:
        op["metadata"] = metadata
    if done is not None:
        op["done"] = done
    if response is not None:
        op["response"] = response
    if error is not None:
        op["error"] = error
    op.update(extra)
    return op


def docai_metadata(state: str = "RUNNING", statuses: list | None = None, **extra: Any) -> dict:
    meta: dict[str, Any] = {
        "@type": DOCAI_BATCH_METADATA,
        "state": state,
        "createTime": "2024-05-01T12:00:00Z",
        "updateTime": "2024-05-01T12:00:05Z",
    }
    if statuses is not None:
        meta["individualProcessStatuses"] = statuses
    meta.update(extra)
    return meta


def docai_status(code: int = 0, review_state: str | None = None, n: int = 0) -> dict:
    entry: dict[str, Any] = {
        "inputGcsSource": f"gs://in/doc-{n}.pdf",
        "outputGcsDestination": f"gs://out/doc-{n}/",
        "status": {} if code == 0 else {"code": code, "message": "item failed"},
    }
    if review_state is not None:
        entry["humanReviewStatus"] = {"state": review_state}
    return entry


def vision_metadata(state: str = "PROCESSING") -> dict:
    return {
        "@type": VISION_BATCH_METADATA,
        "state": state,
        "submitTime": "2024-05-01T12:00:00Z",
    }


def transient(code: int = 503, retry_after_s: float | None = None) -> ApiFailure:
    return ApiFailure("transient", {"code": code, "status": "UNAVAILABLE", "message": "try later"},
                      retry_after_s)


def not_found() -> ApiFailure:
    return ApiFailure("not_found", {"code": 404, "status": "NOT_FOUND", "message": "no such operation"})


def permanent(code: int = 403) -> ApiFailure:
    return ApiFailure("permanent", {"code": code, "status": "PERMISSION_DENIED", "message": "denied"})


def stats_of(durations) -> DurationStats:
    """Duration statistics learnt from these durations, in order."""
    stats = DurationStats()
    for d in durations:
        stats.add(d)
    return stats


def lognormal(n: int, median: float, sigma: float = 0.3, seed: int = 1) -> list[float]:
    """n reproducible log-normal durations around median."""
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def steered_record(progress_then: int, progress_now: int, gap_s: float = 10.0):
    """A record after two polls `gap_s` apart that saw progress move, as the poller leaves it."""
    def seen(percent):
        return operation(done=False, metadata=docai_metadata("RUNNING", progressPercent=percent))

    policy = {"initial_delay_s": 1, "multiplier": 1, "max_delay_s": 3600, "jitter": 0}
    record = after_poll(make_record(policy=policy), seen(progress_then), NOW + timedelta(seconds=100)).record
    return after_poll(record, seen(progress_now), NOW + timedelta(seconds=100 + gap_s)).record
