"""Shard ownership: the fence that lets a poll run GET and write without a claim per operation.

A run works only the records of shards whose lease it holds (functions.ports.Leases,
key `shard-K`). A lease lasts LRO_LEASE_S and is renewed every third of it, each
renewal guarded by the version the previous write returned, so a run that lost a
lease (it stalled past its end, and another run took the shard over) learns so at
its next renewal and can never renew it again. A run treats a shard as held only
until a third of the lease before its end, measured from when it last renewed on
its own clock: it starts no GET for a shard it might no longer hold. A crashed
run's shards are free again within one lease.

An unsharded run (Cloud Scheduler's) wants every shard and keeps trying to take
those still held by another run (a late run, a manual one) at each renewal; a
shard run wants its one shard and is skipped when another run holds it.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable

from functions.domain import runs
from functions.domain.record import utcnow
from functions.ports import Leases

log = logging.getLogger(__name__)

# A shard counts as ours until this long (at most a sixth of the lease) before its lease ends,
# measured on our own clock from the moment we asked for it: room for clock skew between instances.
MARGIN_S = 2.0


class ShardOwnership:
    def __init__(self, leases: Leases | None, holder: str, shards: int, shard: int | None, lease_s: float, *,
                 clock: Callable = utcnow, monotonic: Callable[[], float] = time.monotonic):
        """shards: how many the record space has; shard: the one a shard run wants (None: all)."""
        self._leases = leases
        self._holder = holder
        self._shards = shards
        self._wanted = list(range(shards)) if shard is None else [shard]
        self._lease_s = lease_s
        self._clock = clock
        self._monotonic = monotonic
        self._versions: dict[str, object] = {}
        self._valid_until: dict[int, float] = {}
        self._renewed_at = float("-inf")

    @property
    def held(self) -> frozenset[int]:
        now = self._monotonic()
        return frozenset(k for k, until in self._valid_until.items() if now < until)

    def shards_filter(self) -> frozenset[int] | None:
        """The shards a due query asks for: None when the run holds every shard."""
        held = self.held
        return None if len(held) == self._shards else held

    def holds(self, shard: int) -> bool:
        return self._monotonic() < self._valid_until.get(shard, float("-inf"))

    @property
    def missing(self) -> list[int]:
        held = self.held
        return [k for k in self._wanted if k not in held]

    def due_for_renewal(self) -> bool:
        return self._monotonic() - self._renewed_at >= self._lease_s / 3

    def acquire(self) -> frozenset[int]:
        """Renew what is held and try to take what is missing; returns the shards now held."""
        started = self._monotonic()
        self._renewed_at = started
        if self._leases is None:  # a single poller (tests): every shard is its own
            self._valid_until = {k: float("inf") for k in self._wanted}
            return self.held
        now = self._clock()
        until = now + timedelta(seconds=self._lease_s)
        valid = started + self._lease_s - min(self._lease_s / 6, MARGIN_S)
        wanted = {runs.shard_key(k): k for k in self._wanted}
        try:
            renewed = self._leases.renew(self._versions, until) if self._versions else {}
            lost = set(self._versions) - set(renewed)
            if lost:
                log.warning("shard leases lost to another run", extra={"leases": sorted(lost)})
            taken = self._leases.acquire_many([key for key in wanted if key not in renewed], self._holder, now,
                                              until, kind="shard")
        except Exception:  # Firestore is slow or down: what we hold runs out on its own clock
            log.warning("could not renew or take shard leases", exc_info=True)
            return self.held
        self._versions = {**renewed, **taken}
        self._valid_until = {wanted[key]: valid for key in self._versions}
        return self.held

    def release(self) -> None:
        """Free our shards for the next run at once (a crashed run's free themselves within a lease)."""
        if self._leases is None or not self._versions:
            return
        now = self._clock()
        self._valid_until = {}
        try:
            self._leases.renew(self._versions, now, finished_at=now)
        except Exception:  # the leases end on their own; never fail a run over it
            log.warning("could not release shard leases", exc_info=True)
        self._versions = {}
