"""`lrowatch wait ID…`: block until the operations are finished; the exit code says how.

It reads the records over lrowatch's HTTP surface (GET /operations/{id}), so it
needs only the invoker role. Polling ("not done yet", every --interval) and
retrying (no answer, 429, 5xx: functions.cli.retry) are separate schedules.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from functions.cli.api import Client
from functions.cli.errors import CANCELLED, FAILED, OK, STOPPED_TRACKING, WAIT_TIMEOUT
from functions.cli.retry import Backoff

# How each terminal state ends a wait.
EXIT_CODES = {
    "SUCCEEDED": OK,
    "FAILED": FAILED,
    "CANCELLED": CANCELLED,
    "EXPIRED": STOPPED_TRACKING,
    "TIMED_OUT": STOPPED_TRACKING,
}
# With several operations the first of these that applies wins: the outcome a
# script must not miss comes first.
PRECEDENCE = (WAIT_TIMEOUT, FAILED, STOPPED_TRACKING, CANCELLED, OK)

Show = Callable[[list[dict], float], None]


def exit_code(records: list[dict]) -> int:
    """The exit code for these records as they stand (an unfinished one: the wait timed out)."""
    codes = {EXIT_CODES.get(r.get("state"), FAILED) if r.get("done") else WAIT_TIMEOUT for r in records}
    return next(code for code in PRECEDENCE if code in codes)


@dataclass
class Waiter:
    client: Client
    backoff: Backoff
    interval_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def wait(self, operation_ids: list[str], timeout_s: float | None, show: Show) -> list[dict]:
        """The records once all are done, or as they stand when `timeout_s` runs out.
        An unknown id raises NotFoundError at once; a long outage raises Unreachable."""
        started = self.clock()
        deadline = None if timeout_s is None else started + timeout_s
        records = {i: self._get(i) for i in dict.fromkeys(operation_ids)}
        while True:
            show(list(records.values()), self.clock() - started)
            pending = [i for i, r in records.items() if not r.get("done")]
            if not pending:
                break
            remaining = None if deadline is None else deadline - self.clock()
            if remaining is not None and remaining <= 0:
                break
            self.sleep(self.interval_s if remaining is None else min(self.interval_s, remaining))
            for operation_id in pending:
                records[operation_id] = self._get(operation_id)
        return list(records.values())

    def _get(self, operation_id: str) -> dict:
        return self.backoff.call(lambda: self.client.get(operation_id))
