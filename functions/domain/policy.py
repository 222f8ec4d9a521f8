"""When to poll next: the polling schedule and, apart from it, the retry schedule.

"Not done yet" drives the polling schedule (initial delay, multiplier, max
delay, deadline). API errors (429/5xx/timeouts) drive a separate, shorter
retry schedule; mixing the two is what makes a 503 end a wait elsewhere.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from functions.domain.errors import InvalidArgument

_LIMITS = {
    # field: (low, high)
    "initial_delay_s": (0.0, 86400.0),
    "multiplier": (1.0, 10.0),
    "max_delay_s": (1.0, 86400.0),
    "deadline_s": (1.0, 30 * 86400.0),
    "jitter": (0.0, 0.5),
}

# Retry schedule for transient API errors: 1 s, 2 s, 4 s … capped at 60 s.
RETRY_BASE_S = 1.0
RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class Policy:
    """A submitter's polling policy (contract §3 `policy`), defaults documented in README."""

    initial_delay_s: float = 5.0
    multiplier: float = 1.5
    max_delay_s: float = 120.0
    deadline_s: float = 7 * 86400.0
    cancel_on_deadline: bool = False
    jitter: float = 0.1

    @classmethod
    def from_dict(cls, raw: Any, base: "Policy | None" = None) -> "Policy":
        """Validate a JSON policy; unspecified fields come from `base`."""
        base = base or cls()
        if raw is None:
            return base
        if not isinstance(raw, Mapping):
            raise InvalidArgument("policy must be an object")
        unknown = set(raw) - set(_LIMITS) - {"cancel_on_deadline"}
        if unknown:
            raise InvalidArgument(f"policy has unknown fields: {', '.join(sorted(unknown))}")
        values = asdict(base)
        for key, (low, high) in _LIMITS.items():
            if key not in raw:
                continue
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise InvalidArgument(f"policy.{key} must be a number")
            if not low <= value <= high:
                raise InvalidArgument(f"policy.{key} must be between {low:g} and {high:g}")
            values[key] = float(value)
        if "cancel_on_deadline" in raw:
            if not isinstance(raw["cancel_on_deadline"], bool):
                raise InvalidArgument("policy.cancel_on_deadline must be true or false")
            values["cancel_on_deadline"] = raw["cancel_on_deadline"]
        policy = cls(**values)
        if policy.initial_delay_s > policy.max_delay_s:
            raise InvalidArgument("policy.initial_delay_s must not exceed policy.max_delay_s")
        return policy

    @classmethod
    def parsed(cls, raw: Any) -> "Policy":
        """from_dict(raw), cached by raw's items: every poll reads its record's policy, and most
        records share a few. An invalid policy raises, as from_dict does, and is never cached."""
        try:
            # Types in the key: True == 1, but only 1 is a valid number of seconds.
            key = tuple(sorted((k, type(v), v) for k, v in raw.items())) if isinstance(raw, Mapping) else raw
            hash(key)
        except TypeError:  # not a plain policy (unhashable values): parsed, never cached
            return cls.from_dict(raw)
        policy = _PARSED.get(key)
        if policy is None:
            policy = cls.from_dict(raw)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = policy
        return policy

    def to_dict(self) -> dict:
        return asdict(self)

    def poll_delay(self, polls_done: int, rng: random.Random | None = None) -> float:
        """Delay before the next poll after `polls_done` polls saw "not done"."""
        # Growth starts from at least 1 s, so initial_delay_s=0 (poll at once) still backs off.
        base = max(self.initial_delay_s, 1.0)
        try:
            delay = base * (self.multiplier ** max(polls_done, 0))
        except OverflowError:  # 1.5 ** ~1750: long-running operations polled at max_delay_s
            delay = self.max_delay_s
        delay = max(min(delay, self.max_delay_s), 1.0)
        return _jittered(delay, self.jitter, rng)


def retry_delay(consecutive_errors: int, retry_after_s: float | None = None,
                rng: random.Random | None = None) -> float:
    """Delay after a transient API error; a server's Retry-After wins if longer."""
    delay = min(RETRY_BASE_S * (2 ** max(consecutive_errors - 1, 0)), RETRY_MAX_S)
    delay = _jittered(delay, 0.2, rng)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, 3600.0))
    return delay


def _jittered(delay: float, jitter: float, rng: random.Random | None) -> float:
    # Jitter spreads operations submitted together so their polls do not align.
    if jitter <= 0:
        return delay
    rng = rng or random
    return delay * (1.0 + rng.uniform(-jitter, jitter))


# Policy.parsed's cache: policies by their items, at most _PARSED_MAX (then cleared).
_PARSED: dict[Any, Policy] = {}
_PARSED_MAX = 4096
