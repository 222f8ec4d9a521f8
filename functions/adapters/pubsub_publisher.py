"""Publishing to Pub/Sub: many messages in one Publish request, ordered by operation.

Why not the client library's batching publisher: with message ordering on, it
keeps a batch, a commit thread and a Publish RPC for every ordering key, and
each operation is its own key, so a poll run paid a thread and an RPC per
event. Here a call's messages go in as few Publish requests as the limits allow,
built as raw protobuf, through the same client (its channel, credentials and
emulator set-up). Pub/Sub keeps the order of a request's messages of one key,
and one call's requests go one after another.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from functions import logs
from functions.adapters.lazy import Lazy
from functions.domain.events import Message

log = logging.getLogger(__name__)

# The client retries an unavailable Pub/Sub for up to its timeout; a poll run
# must not stall that long, since an unpublished event waits safely in the outbox.
DEFAULT_TIMEOUT_S = 10.0
# Pub/Sub's limits on one Publish request: 1,000 messages, 10 MB (room left for framing).
MAX_MESSAGES = 1000
MAX_REQUEST_BYTES = 9 * 1024 * 1024


class NotSent(Exception):
    """An earlier message of the same ordering key failed in this call, so this one was held back."""


class Publisher:
    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, publish_rpc: Callable[..., Any] | None = None):
        """publish_rpc: sends one PublishRequest (request=, retry=, timeout=); the gapic client's by default."""
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        self._timeout_s = timeout_s
        # The client's default retry runs for minutes; bound the whole attempt, not just each RPC.
        self._retry = Retry(
            predicate=if_exception_type(gexc.Aborted, gexc.DeadlineExceeded, gexc.InternalServerError,
                                        gexc.ResourceExhausted, gexc.ServiceUnavailable, gexc.Unknown),
            initial=0.1, maximum=2.0, multiplier=1.5, timeout=timeout_s)
        self._client = Lazy(_publisher_client)
        self._publish_rpc = publish_rpc or self._gapic_publish

    @property
    def client(self):
        return self._client.get()

    def publish(self, topic: str, messages: Sequence[Message]) -> list[str | Exception]:
        """Publish all; one message id or exception per message, in order.

        Once a message of an ordering key fails, the key's later messages in this
        call are failed without being sent, so a key never skips ahead. One
        deadline bounds the whole call, however many requests it takes.
        """
        # The trace being served goes on with each message, so its consumer can continue it.
        traceparent = logs.outgoing_traceparent()
        trace = {"traceparent": traceparent} if traceparent else {}
        deadline = time.monotonic() + self._timeout_s
        results: list[str | Exception | None] = [None] * len(messages)
        failed_keys: set[str] = set()
        payloads = [m.encoded() for m in messages]
        for chunk in _requests(messages, payloads):
            send = []
            for i in chunk:
                key = messages[i].ordering_key
                if key and key in failed_keys:
                    results[i] = NotSent(f"an earlier message of ordering key {key} failed")
                else:
                    send.append(i)
            if not send:
                continue
            sent = self._send(topic, [(messages[i], payloads[i]) for i in send], trace, deadline)
            for i, outcome in zip(send, sent):
                results[i] = outcome
                if isinstance(outcome, Exception) and messages[i].ordering_key:
                    failed_keys.add(messages[i].ordering_key)
        return results  # type: ignore[return-value]

    def _send(self, topic: str, messages: list[tuple[Message, bytes]], trace: dict,
              deadline: float) -> list[str | Exception]:
        """One Publish request: every message's id, or the request's exception for each."""
        from google.pubsub_v1.types import PublishRequest

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return [TimeoutError("publishing took longer than its deadline")] * len(messages)
        request = PublishRequest.pb()(topic=topic)
        for message, payload in messages:
            pb = request.messages.add(data=payload, ordering_key=message.ordering_key)
            pb.attributes.update({**trace, **message.attributes})
        try:
            response = self._publish_rpc(request=PublishRequest.wrap(request),
                                         retry=self._retry.with_timeout(remaining), timeout=remaining)
        except Exception as exc:
            return [exc] * len(messages)
        ids = list(response._pb.message_ids)
        if len(ids) != len(messages):
            return [RuntimeError(f"Pub/Sub answered {len(ids)} ids for {len(messages)} messages")] * len(messages)
        return ids

    def _gapic_publish(self, **kwargs):
        """The gapic client's own publish: the library's subclass overrides it with its batching."""
        from google.pubsub_v1 import PublisherClient as Gapic

        return Gapic.publish(self.client, **kwargs)

    def publish_one(self, topic: str, message: Message) -> str:
        """Publish one message; raises on failure."""
        result = self.publish(topic, [message])[0]
        if isinstance(result, Exception):
            raise result
        return result


def _requests(messages: Sequence[Message], payloads: list[bytes]) -> list[list[int]]:
    """The messages' indexes, in order, cut into requests within Pub/Sub's limits."""
    chunks: list[list[int]] = [[]]
    size = 0
    for i, message in enumerate(messages):
        weight = len(payloads[i]) + sum(len(k) + len(v) for k, v in message.attributes.items()) + 100
        if chunks[-1] and (len(chunks[-1]) >= MAX_MESSAGES or size + weight > MAX_REQUEST_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += weight
    return [c for c in chunks if c]


def _publisher_client():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()
