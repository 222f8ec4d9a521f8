"""Gets recorded events onto Pub/Sub, each operation's in sequence order.

A change and its event are committed together (the outbox entry); this relay
publishes them and deletes what went out. What did not go out (crash, Pub/Sub
outage, a failed ordered publish) stays and is published later with the same
event_id and sequence.

Order per operation: once an operation has an event waiting in the outbox,
its newer events are not published directly but left behind it, and the
outbox is flushed in creation order (an operation's sequence order), skipping
an operation's later entries as soon as one of its entries fails.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable

from functions.config import Settings
from functions.domain.events import Message, outbox_id
from functions.ports import Outbox, Publisher

log = logging.getLogger(__name__)

# A live run's entries are left to it this long before another run republishes them.
OUTBOX_GRACE_S = 10.0
# After a publish in which everything failed (Pub/Sub down), stop trying this long.
PAUSE_AFTER_OUTAGE_S = 5.0
TOPIC_KINDS = ("events", "commands")


class OutboxRelay:
    def __init__(self, settings: Settings, store: Outbox, publisher: Publisher, summary, *, clock: Callable,
                 monotonic: Callable[[], float] = time.monotonic, grace_s: float | None = None):
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._summary = summary
        self._clock = clock
        self._monotonic = monotonic
        self._grace_s = OUTBOX_GRACE_S if grace_s is None else grace_s
        # Operations whose newer events must wait behind older ones in the outbox.
        self.blocked: set[str] = set()
        self._paused_until = 0.0

    @property
    def paused(self) -> bool:
        return self._monotonic() < self._paused_until

    def start(self) -> None:
        """Publish what earlier runs left (past the grace), and hold back the rest's operations."""
        self.blocked = self._store.outbox_operation_ids()
        self.flush(include_blocked=False)

    def publish(self, messages: list[tuple[str, Message]]) -> None:
        """Freshly committed (topic kind, message) pairs; blocked operations' stay in the outbox."""
        ready = [(kind, m) for kind, m in messages if not (m.ordering_key and m.ordering_key in self.blocked)]
        waiting = len(messages) - len(ready)
        if waiting:
            self._summary.count("deferred_events", waiting)
        if self.paused:
            self.blocked.update(m.ordering_key for _, m in ready if m.ordering_key)
            self._summary.count("deferred_events", len(ready))
            return
        self._send(ready)

    def flush(self, include_blocked: bool = True) -> None:
        """Publish the outbox, oldest first: all of blocked operations' entries (when asked),
        others' once past the grace (younger ones may still be in a live run's hands)."""
        if self.paused:
            return
        now = self._clock()
        grace_edge = now - timedelta(seconds=self._grace_s)
        failed: set[str] = set()
        retry = set(self.blocked) if include_blocked else set()
        for page in self._store.outbox_pages(now):
            entries = [e for e in page
                       if (e.message.ordering_key in retry or e.created_at is None or e.created_at <= grace_edge)
                       and e.message.ordering_key not in failed]
            before = self._summary.published
            failed |= self._send([(e.topic, e.message) for e in entries])
            self._summary.count("recovered", self._summary.published - before)
            if self.paused:
                break
        else:  # went through every page: the retried operations that did not fail are clear
            self.blocked -= retry - failed
        self.blocked |= failed

    def _send(self, messages: list[tuple[str, Message]]) -> set[str]:
        """Publish, delete what went out from the outbox; returns the ordering keys that failed."""
        failed: set[str] = set()
        done: list[str] = []
        for kind in TOPIC_KINDS:
            batch = [m for k, m in messages if k == kind]
            if not batch:
                continue
            topic = self._settings.topic_path(
                self._settings.events_topic if kind == "events" else self._settings.commands_topic)
            try:
                results = self._publisher.publish(topic, batch)
            except Exception as exc:  # whatever Pub/Sub's client raises, the outbox keeps the events
                results = [exc] * len(batch)
            for message, result in zip(batch, results):
                if isinstance(result, Exception):
                    self._summary.count("publish_errors")
                    if message.ordering_key:
                        failed.add(message.ordering_key)
                    log.warning("publish failed; the event stays in the outbox",
                                extra={"event_id": message.data.get("event_id"), "error": str(result)[:300]})
                else:
                    self._summary.count("published")
                    done.append(outbox_id(kind, message))
            if results and all(isinstance(r, Exception) for r in results):
                self._paused_until = self._monotonic() + PAUSE_AFTER_OUTAGE_S
        if done:
            self._store.delete_outbox(done)
        self.blocked |= failed
        return failed
