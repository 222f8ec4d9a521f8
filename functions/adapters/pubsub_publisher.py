"""Publishing to Pub/Sub: batched, ordered by operation, resumed after failure."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Sequence

from functions.domain.events import Message

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, timeout_s: float = 30.0):
        self._timeout_s = timeout_s
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:  # built lazily: cold starts must not pay for it
            if self._client is None:
                from google.cloud import pubsub_v1

                self._client = pubsub_v1.PublisherClient(
                    batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01),
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
                )
            return self._client

    def publish(self, topic: str, messages: Sequence[Message]) -> list[str | Exception]:
        """Publish all, wait for all; one message id or exception per message, in order."""
        futures: list[Future | Exception] = []
        for message in messages:
            try:
                futures.append(self.client.publish(
                    topic, message.encoded(), ordering_key=message.ordering_key,
                    timeout=self._timeout_s, **message.attributes))
            except Exception as exc:  # e.g. the key is paused after an earlier failure
                futures.append(exc)
        results: list[str | Exception] = []
        for message, future in zip(messages, futures):
            if isinstance(future, Exception):
                results.append(future)
            else:
                try:
                    results.append(future.result(timeout=self._timeout_s))
                except (Exception, FutureTimeout) as exc:
                    results.append(exc)
            if isinstance(results[-1], Exception) and message.ordering_key:
                # A failed ordered publish pauses its key until resumed.
                self.client.resume_publish(topic, message.ordering_key)
        return results

    def publish_one(self, topic: str, message: Message) -> str:
        """Publish one message; raises on failure."""
        result = self.publish(topic, [message])[0]
        if isinstance(result, Exception):
            raise result
        return result
