"""Topics and subscriptions of the local stack, made on the Pub/Sub emulator.

The same shape Terraform builds in the cloud: events and commands pushed to
`handle`, submissions pushed to `submit_pubsub`, shard-run requests pushed to
`poll` (its fan-out), each push subscription with a
dead-letter topic and a retry policy; ordering on the events subscription
(events carry the operation id as ordering key). Every call is idempotent.

Uses the plain GAPIC clients over an explicit insecure channel, so the target
emulator need not be the one named in os.environ.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import grpc
from google.api_core import exceptions
from google.protobuf import duration_pb2
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

if TYPE_CHECKING:
    from functions.config import Settings

MAX_DELIVERY_ATTEMPTS = 5
MIN_BACKOFF_S = 1  # the emulator may ignore the retry policy; the cloud does not
MAX_BACKOFF_S = 10
PUSH_ACK_DEADLINE_S = 60  # a push request may run this long before Pub/Sub redelivers


@dataclass(frozen=True)
class PulledMessage:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    ordering_key: str = ""
    message_id: str = ""

    def json(self) -> Any:
        return json.loads(self.data)


class Topology:
    def __init__(self, settings: "Settings", emulator_host: str | None = None) -> None:
        host = emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST")
        if not host:
            raise ValueError("no Pub/Sub emulator host: pass emulator_host or set PUBSUB_EMULATOR_HOST")
        self.settings = settings
        self.project = settings.project
        self._channel = grpc.insecure_channel(host)
        self.publisher = PublisherClient(transport=PublisherGrpcTransport(channel=self._channel))
        self.subscriber = SubscriberClient(transport=SubscriberGrpcTransport(channel=self._channel))

    # --- names --------------------------------------------------------------

    def topic_path(self, topic: str) -> str:
        return self.settings.topic_path(topic)

    def subscription_path(self, name: str) -> str:
        return name if name.startswith("projects/") else f"projects/{self.project}/subscriptions/{name}"

    # --- the lrowatch topology ---------------------------------------------

    def build(self, urls: Mapping[str, str]) -> dict[str, str]:
        """All topics, and push subscriptions to the functions in `urls`
        ({"handle": "http://127.0.0.1:P", "submit_pubsub": ...}).
        Returns {role: subscription path}."""
        s = self.settings
        built = {
            "events": self.create_push_subscription(
                s.events_topic, _sub_name(s.events_topic, "handle"), urls["handle"], ordering=True),
            "commands": self.create_push_subscription(
                s.commands_topic, _sub_name(s.commands_topic, "handle"), urls["handle"]),
            "submissions": self.create_push_subscription(
                s.submissions_topic, _sub_name(s.submissions_topic, "submit-pubsub"), urls["submit_pubsub"]),
        }
        if "poll" in urls:
            # A shard run answers when its budget is spent: the ack deadline must outlast it.
            ack_deadline = min(600, max(PUSH_ACK_DEADLINE_S, int(s.poll_budget_s) + 10))
            built["poll_shards"] = self.create_push_subscription(
                s.poll_shards_topic, _sub_name(s.poll_shards_topic, "poll"), urls["poll"],
                ack_deadline_s=ack_deadline)
        return built

    # --- building blocks ------------------------------------------------------

    def create_topic(self, topic: str) -> str:
        path = self.topic_path(topic)
        try:
            self.publisher.create_topic(request={"name": path})
        except exceptions.AlreadyExists:
            pass
        return path

    def create_push_subscription(self, topic: str, name: str, push_url: str, *, ordering: bool = False,
                                 ack_deadline_s: int = PUSH_ACK_DEADLINE_S) -> str:
        """Push to `push_url`/ with a `<name>-dlq` dead-letter topic (kept on a pull
        subscription of the same name, so dead letters can be inspected)."""
        endpoint = push_url.rstrip("/") + "/"
        dlq_topic = self.create_topic(f"{name}-dlq")
        self.create_pull_subscription(dlq_topic, f"{name}-dlq")
        path = self.subscription_path(name)
        request = {
            "name": path,
            "topic": self.create_topic(topic),
            "push_config": {"push_endpoint": endpoint},
            "ack_deadline_seconds": ack_deadline_s,
            "enable_message_ordering": ordering,
            "dead_letter_policy": {"dead_letter_topic": dlq_topic, "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS},
            "retry_policy": {
                "minimum_backoff": duration_pb2.Duration(seconds=MIN_BACKOFF_S),
                "maximum_backoff": duration_pb2.Duration(seconds=MAX_BACKOFF_S),
            },
        }
        try:
            self.subscriber.create_subscription(request=request)
        except exceptions.AlreadyExists:
            # Same name, new stack: point it at the function's current port.
            self.subscriber.modify_push_config(request={"subscription": path, "push_config": {"push_endpoint": endpoint}})
        return path

    def create_pull_subscription(self, topic: str, name: str, *, ordering: bool = False) -> str:
        """A subscription to observe a topic (tests, demo); messages sent before it exists are not seen."""
        path = self.subscription_path(name)
        try:
            self.subscriber.create_subscription(
                request={"name": path, "topic": self.create_topic(topic), "enable_message_ordering": ordering})
        except exceptions.AlreadyExists:
            pass
        return path

    def publish(self, topic: str, data: bytes | str | Mapping, *, ordering_key: str = "", **attributes: str) -> str:
        """Publish one message (dicts are sent as JSON); returns its message id."""
        if isinstance(data, Mapping):
            data = json.dumps(data)
        if isinstance(data, str):
            data = data.encode()
        message = {"data": data, "attributes": dict(attributes), "ordering_key": ordering_key}
        response = self.publisher.publish(request={"topic": self.topic_path(topic), "messages": [message]})
        return response.message_ids[0]

    def pull_all(self, subscription: str, timeout: float = 5.0, *, expect: int | None = None) -> list[PulledMessage]:
        """Pull and ack until `timeout` seconds have passed, or sooner once `expect`
        messages have arrived. Returns them in the order received."""
        path = self.subscription_path(subscription)
        deadline = time.monotonic() + timeout
        received: list[PulledMessage] = []
        while time.monotonic() < deadline and (expect is None or len(received) < expect):
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": 100},
                    # Never a very short pull: one that times out after the emulator handed out
                    # messages hides them until their ack deadline (10 s) passes.
                    timeout=max(1.0, min(2.0, deadline - time.monotonic())),
                )
            except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable):
                continue
            if not response.received_messages:
                time.sleep(0.1)
                continue
            self.subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]})
            received.extend(
                PulledMessage(
                    data=m.message.data,
                    attributes=dict(m.message.attributes),
                    ordering_key=m.message.ordering_key,
                    message_id=m.message.message_id,
                )
                for m in response.received_messages
            )
        return received

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _sub_name(topic: str, target: str) -> str:
    """`lro-events` + handle → `lro-events-handle` (topic may be a full path)."""
    return f"{topic.rsplit('/', 1)[-1]}-{target}"


def ensure_topics(project: str, *topics: str) -> None:
    """Create topics on the emulator if missing (tests and benchmarks)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    for topic in topics:
        try:
            publisher.create_topic(request={"name": f"projects/{project}/topics/{topic}"})
        except exceptions.AlreadyExists:
            pass
