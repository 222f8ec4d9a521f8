"""Consume lrowatch's events: an ordered Pub/Sub subscriber that acts once per event.

    python consumer_ordered.py projects/my-project/subscriptions/my-lro-events

Create the subscription with ordering (the ordering key is the operation id):

    gcloud pubsub subscriptions create my-lro-events --topic=lro-events \\
        --enable-message-ordering [--message-filter='attributes.done = "true"']

Pub/Sub delivers at least once, and an event republished from lrowatch's
outbox may arrive late: dedupe on `event_id`, and never let an older
`sequence` overwrite a newer one. Keep `Seen` in your own durable store
(Firestore, a SQL table with a TTL) so that it survives restarts; the
in-memory one here is for the example.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Seen:
    """What has been applied: event ids, and the highest sequence per operation."""

    event_ids: set[str] = field(default_factory=set)
    sequence: dict[str, int] = field(default_factory=dict)


def on_event(event: dict, seen: Seen, act: Callable[[dict], None]) -> str:
    """Apply one event at most once; returns what happened to it."""
    if event.get("type") != "lro.state_changed":
        return "skipped"  # other types (lro.cancel_outcome, future ones): not ours to act on
    if event["event_id"] in seen.event_ids:
        return "duplicate"
    operation_id = event["operation"]["id"]
    if event["sequence"] <= seen.sequence.get(operation_id, 0):
        seen.event_ids.add(event["event_id"])
        return "stale"  # an older state arriving late changes nothing
    act(event)  # your effect; if it raises, the message is not acked and comes back
    seen.sequence[operation_id] = event["sequence"]
    seen.event_ids.add(event["event_id"])
    return "applied"


def callback(seen: Seen, act: Callable[[dict], None], report: Callable[[str], None] = lambda outcome: None):
    """A Pub/Sub streaming-pull callback around on_event: ack only after the effect.
    `report` hears each outcome (applied, duplicate, stale, skipped, not json): a metric, a log."""
    def receive(message) -> None:
        try:
            event = json.loads(message.data)
        except ValueError:
            report("not json")
            message.ack()  # not an lrowatch event: never retry it
            return
        report(on_event(event, seen, act))
        message.ack()
    return receive


def main(subscription: str) -> None:
    from google.cloud import pubsub_v1

    def act(event: dict) -> None:
        print(f'{event["operation"]["name"]}: {event["previous_state"]} -> {event["state"]}', flush=True)

    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.subscribe(subscription, callback=callback(Seen(), act)).result()


if __name__ == "__main__":
    main(sys.argv[1])
