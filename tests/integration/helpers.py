"""Small helpers for tests against the emulators."""
from __future__ import annotations

import json
import time
from pathlib import Path

from google.api_core import exceptions as gexc

from functions.local.topology import ensure_topics as create_topics  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]


def api_app(target: str):
    """main.py's function `target` inside functions-framework's own Flask app."""
    from functions_framework import create_app

    signature = "cloudevent" if target in ("handle", "submit_pubsub") else "http"
    return create_app(target, str(ROOT / "main.py"), signature)


def count_records(project: str, collection: str = "lro_operations") -> int:
    from google.cloud import firestore

    return sum(1 for _ in firestore.Client(project=project).collection(collection).stream())


def pull_subscription(project: str, topic: str, name: str) -> str:
    from google.cloud import pubsub_v1

    create_topics(project, topic)
    path = f"projects/{project}/subscriptions/{name}"
    try:
        pubsub_v1.SubscriberClient().create_subscription(request={
            "name": path, "topic": f"projects/{project}/topics/{topic}", "enable_message_ordering": True})
    except gexc.AlreadyExists:
        pass
    return path


def pull_raw(project: str, subscription: str, expect: int, timeout_s: float = 10.0) -> list:
    """Pull until `expect` messages arrived (or the timeout), acknowledging them."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = f"projects/{project}/subscriptions/{subscription}"
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < expect and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=5)
        if response.received_messages:
            subscriber.acknowledge(request={"subscription": path,
                                            "ack_ids": [m.ack_id for m in response.received_messages]})
        messages += [m.message for m in response.received_messages]
    return messages


def pull_messages(project: str, subscription: str, expect: int, timeout_s: float = 10.0) -> list[dict]:
    return [json.loads(m.data) for m in pull_raw(project, subscription, expect, timeout_s)]
