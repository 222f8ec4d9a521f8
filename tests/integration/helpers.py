"""Small helpers for tests against the emulators."""
from __future__ import annotations

from pathlib import Path

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


def _topology(project: str):
    from functions.config import Settings
    from functions.local.topology import Topology

    return Topology(Settings(project=project))


def pull_subscription(project: str, topic: str, name: str) -> str:
    """An ordered pull subscription on `topic` (created with it if missing)."""
    with _topology(project) as topology:
        return topology.create_pull_subscription(topic, name, ordering=True)


def pull_messages(project: str, subscription: str, expect: int, timeout_s: float = 10.0) -> list[dict]:
    """Decoded data of the messages pulled (and acked) until `expect` arrived or the timeout."""
    with _topology(project) as topology:
        return [m.json() for m in topology.pull_all(subscription, timeout=timeout_s, expect=expect)]
