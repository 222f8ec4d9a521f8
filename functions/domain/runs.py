"""Pure rules of poll runs: lease keys, Scheduler de-duplication windows, shard fan-out."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

# Fan out when more operations are due at once than one run GETs in ~5 s
# (this many per concurrent slot, at ~100 ms a GET): the run is falling behind.
FANOUT_BACKLOG_PER_SLOT = 50
# The `type` of a shard-run request on the poll-shards topic (pushed back to poll).
SHARD_MESSAGE_TYPE = "poll_shard"
# A finished run's marker is kept this long, so a late Scheduler retry of it is still recognised.
MARKER_KEEP_S = 600.0


_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]")


def lease_key(*parts: str) -> str:
    """A document id from free text (schedule times hold ':'; ids may not hold '/')."""
    return _UNSAFE.sub("_", "-".join(parts))[:1400]


def schedule_key(schedule_time: str, shard: int | None) -> str:
    """The marker of one Cloud Scheduler tick (per shard), so a retry of it is recognised."""
    return lease_key("run", schedule_time, "" if shard is None else str(shard))


def shard_key(shard: int) -> str:
    return lease_key("shard", str(shard))


def shard_request(shard: int, budget_s: float, requested_at: str) -> dict:
    """The data of a shard-run message on the poll-shards topic (pushed back to poll)."""
    return {"type": SHARD_MESSAGE_TYPE, "shard": shard, "budget_s": budget_s, "requested_at": requested_at}


def fanout_threshold(concurrency: int) -> int:
    return concurrency * FANOUT_BACKLOG_PER_SLOT


def shards_to_fan_out(due_backlog: int, threshold: int, shards: int) -> list[int]:
    """The shard runs to start, or none when one run can keep up (or there is one shard)."""
    if shards <= 1 or due_backlog <= threshold:
        return []
    return list(range(shards))


def lease_end(now: datetime, budget_s: float, margin_s: float = 30.0) -> datetime:
    """How long a run holds its marker or a shard: its budget, plus the time to stop cleanly.

    A crashed run's lease ends on its own, so the next run (or a retry) takes over.
    """
    return now + timedelta(seconds=budget_s + margin_s)


def marker_kept_until(now: datetime) -> datetime:
    return now + timedelta(seconds=MARKER_KEEP_S)
