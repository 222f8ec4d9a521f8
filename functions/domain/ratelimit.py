"""Quota-aware polling: a rate limit per (service, credential), AIMD on 429.

Google's quotas bind before our CPU does: Document AI allows 1,800 requests a
minute per user, and lrowatch's service account is that one user for every
project it polls. So GETs to one service share one token bucket. A limit may
also be set for one quota project (`x-goog-user-project`), whose requests then
count against that project instead.

- Configured as `LRO_RATE_LIMITS=documentai=1800/min,vision@my-project=600/min`
  (per `s`, `min` or `h`); defaults come from published quotas (DEFAULT_LIMITS),
  which apply to Google's APIs only: with LRO_API_BASE_URL (a local stand-in)
  only configured limits apply.
- Shared across shard runs without coordination: a run holding k of S shards
  takes k/S of each limit (a run holding every shard takes all of it).
- 429 RESOURCE_EXHAUSTED halves the rate (at most once per second, since the
  GETs already in flight answer 429 together); each second without one gives
  back a tenth of the limit, up to the limit.

Pure: time is passed in (monotonic seconds), nothing here sleeps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from functions.domain.errors import InvalidArgument

# Published per-user request quotas (requests per second), where known.
# Document AI: 1,800 requests/min per user (cloud.google.com/document-ai/quotas);
# Vision: 1,800 requests/min (cloud.google.com/vision/quotas).
DEFAULT_LIMITS = {"documentai.googleapis.com": 30.0, "vision.googleapis.com": 30.0}
DECREASE = 0.5
RECOVER_PER_S = 0.1  # of the limit, per second without a 429
COOLDOWN_S = 1.0
BURST_S = 1.0  # a bucket holds this many seconds' worth of tokens
FLOOR_PER_S = 0.05  # never stop altogether: one GET every 20 s

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_ENTRY = re.compile(r"^([a-z][a-z0-9.-]*)(?:@([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}))?=([0-9.]+)/([a-z]+)$")


@dataclass(frozen=True)
class Limit:
    service: str  # host, e.g. documentai.googleapis.com
    per_s: float
    quota_project: str | None = None


def service_host(service: str) -> str:
    return service if "." in service else f"{service}.googleapis.com"


def parse_limits(text: str) -> tuple[Limit, ...]:
    """`documentai=1800/min,vision@my-project=10/s` → limits; InvalidArgument names a bad entry."""
    limits = []
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        match = _ENTRY.match(entry.lower())
        if not match or match.group(4) not in _UNITS:
            raise InvalidArgument(f"rate limit {entry!r} is not SERVICE[@QUOTA_PROJECT]=N/(s|min|h)")
        service, project, amount, unit = match.groups()
        per_s = float(amount) / _UNITS[unit]
        if not 0 < per_s <= 1e6:
            raise InvalidArgument(f"rate limit {entry!r} must be a positive rate")
        limits.append(Limit(service_host(service), per_s, project))
    return tuple(limits)


def with_defaults(configured: tuple[Limit, ...], published: bool = True) -> dict[tuple[str, str | None], float]:
    """(service host, quota project or None) → requests per second; configured ones win.
    `published`: include Google's published quotas (not against a local stand-in, which has none)."""
    table = {(service, None): per_s for service, per_s in DEFAULT_LIMITS.items()} if published else {}
    table.update({(limit.service, limit.quota_project): limit.per_s for limit in configured})
    return table


class AimdBucket:
    """A token bucket whose rate is cut multiplicatively on 429 and recovers additively."""

    def __init__(self, limit_per_s: float, now: float):
        self.limit = limit_per_s
        self.rate = limit_per_s
        self._capacity = max(1.0, limit_per_s * BURST_S)
        self._tokens = self._capacity
        self._at = now
        self._cut_at = float("-inf")

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        recovering_since = max(self._at, self._cut_at + COOLDOWN_S)
        self._at = now
        if self.rate < self.limit and now > recovering_since:
            self.rate = min(self.limit, self.rate + RECOVER_PER_S * self.limit * (now - recovering_since))
        self._capacity = max(1.0, self.rate * BURST_S)
        self._tokens = min(self._capacity, self._tokens + elapsed * self.rate)

    def take(self, now: float) -> bool:
        """One GET may go now (a token is used)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until the next token."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def throttled(self, now: float) -> None:
        """The API answered 429: halve the rate (once per cooldown) and drop saved-up tokens."""
        self._refill(now)
        if now - self._cut_at >= COOLDOWN_S:
            self.rate = max(min(FLOOR_PER_S, self.limit), self.rate * DECREASE)
            self._cut_at = now
        self._tokens = min(self._tokens, 0.0)


class RateLimiter:
    """The buckets of one run: one per limited (service, quota project); others are unlimited."""

    def __init__(self, limits: dict[tuple[str, str | None], float], share: float, now: float):
        self._limits = limits
        self._share = share
        self._now = now
        self._buckets: dict[tuple[str, str | None], AimdBucket] = {}

    def key(self, service: str, quota_project: str | None) -> tuple[str, str | None] | None:
        """The bucket a GET counts against, or None when its service has no limit."""
        host = service_host(service)
        if quota_project and (host, quota_project) in self._limits:
            return host, quota_project
        return (host, None) if (host, None) in self._limits else None

    def bucket(self, key: tuple[str, str | None], now: float) -> AimdBucket:
        if key not in self._buckets:
            self._buckets[key] = AimdBucket(max(FLOOR_PER_S, self._limits[key] * self._share), now)
        return self._buckets[key]

    def take(self, key, now: float) -> bool:
        return key is None or self.bucket(key, now).take(now)

    def throttled(self, key, now: float) -> None:
        if key is not None:
            self.bucket(key, now).throttled(now)
