"""Publishing to Pub/Sub: batched, ordered by operation, resumed after failure."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Sequence

from functions import logs
from functions.adapters.lazy import Lazy
from functions.domain.events import Message

log = logging.getLogger(__name__)

# The client retries an unavailable Pub/Sub for up to its timeout; a poll run
# must not stall that long, since an unpublished event waits safely in the outbox.
DEFAULT_TIMEOUT_S = 10.0


class Publisher:
    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        self._timeout_s = timeout_s
        # The client's default retry runs for minutes; bound the whole attempt, not just each RPC.
        self._retry = Retry(
            predicate=if_exception_type(gexc.Aborted, gexc.DeadlineExceeded, gexc.InternalServerError,
                                        gexc.ResourceExhausted, gexc.ServiceUnavailable, gexc.Unknown),
            initial=0.1, maximum=2.0, multiplier=1.5, timeout=timeout_s)
        self._client = Lazy(_publisher_client)

    @property
    def client(self):
        return self._client.get()

    def publish(self, topic: str, messages: Sequence[Message]) -> list[str | Exception]:
        """Publish all, wait for all; one message id or exception per message, in order.

        Once a message of an ordering key fails, the key's later messages in
        this call are failed without being sent, so a key never skips ahead.
        """
        futures: list[Future | Exception] = []
        # The trace being served goes on with each message, so its consumer can continue it.
        traceparent = logs.outgoing_traceparent()
        trace = {"traceparent": traceparent} if traceparent else {}
        for message in messages:
            try:
                futures.append(self.client.publish(
                    topic, message.encoded(), ordering_key=message.ordering_key,
                    retry=self._retry, timeout=self._timeout_s, **{**trace, **message.attributes}))
            except Exception as exc:  # e.g. the key is paused after an earlier failure
                futures.append(exc)
        results: list[str | Exception] = []
        failed_keys: set[str] = set()
        # One deadline for the whole call: waiting on each future in turn for the full timeout
        # would let a stalled Pub/Sub hold a poll run for the timeout times the messages.
        deadline = time.monotonic() + self._timeout_s + 5
        for message, future in zip(messages, futures):
            result: str | Exception
            if isinstance(future, Exception):
                result = future
            else:
                try:
                    result = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except (Exception, FutureTimeout) as exc:
                    result = exc
            key = message.ordering_key
            if key and key in failed_keys and not isinstance(result, Exception):
                # Cannot happen with the client's ordered sequencer; guard the invariant anyway.
                log.warning("an ordered message went out after its key failed", extra={"ordering_key": key})
            if isinstance(result, Exception) and key and key not in failed_keys:
                failed_keys.add(key)
            results.append(result)
        for key in failed_keys:
            # A failed ordered publish pauses its key until resumed; the outbox retries in order.
            try:
                self.client.resume_publish(topic, key)
            except RuntimeError:  # not paused: the failure was our wait timing out, not the publish
                pass
        return results

    def publish_one(self, topic: str, message: Message) -> str:
        """Publish one message; raises on failure."""
        result = self.publish(topic, [message])[0]
        if isinstance(result, Exception):
            raise result
        return result


def _publisher_client():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
