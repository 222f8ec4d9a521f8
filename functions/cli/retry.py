"""Transient-failure retries for the CLI's long-running commands (`wait`, `watch`).

Kept apart from polling on purpose: "not done yet" follows the poll interval;
"no answer, 429 or 5xx" follows this backoff, so one blip never ends a wait and
a long outage ends it with exit code 3 instead of hanging forever.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from functions.cli.errors import CliError, transient

T = TypeVar("T")

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
GIVE_UP_AFTER_S = 300.0  # the default of --max-unavailable


@dataclass
class Backoff:
    """Calls `fn` until it answers, sleeping 1, 2, 4 … 30 s between transient failures,
    for at most `give_up_after_s` of consecutive failure."""

    give_up_after_s: float = GIVE_UP_AFTER_S
    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    on_retry: Callable[[CliError, float], None] = field(default=lambda exc, delay: None)

    def call(self, fn: Callable[[], T]) -> T:
        failing_since: float | None = None
        delay = self.first_delay_s
        while True:
            try:
                return fn()
            except CliError as exc:
                if not transient(exc):
                    raise
                now = self.clock()
                failing_since = now if failing_since is None else failing_since
                if now + delay - failing_since > self.give_up_after_s:
                    raise
                self.on_retry(exc, delay)
                self.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)
