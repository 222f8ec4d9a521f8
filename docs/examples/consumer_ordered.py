"""Consume lrowatch's events: an ordered Pub/Sub subscriber that acts once per event.

    LROWATCH_URL=https://REGION-PROJECT.cloudfunctions.net/lro-submit \\
        python consumer_ordered.py projects/my-project/subscriptions/my-lro-events

Create the subscription with ordering (the ordering key is the operation id):

    gcloud pubsub subscriptions create my-lro-events --topic=lro-events \\
        --enable-message-ordering [--message-filter='attributes.done = "true"']

Pub/Sub delivers at least once, and an event republished from lrowatch's
outbox may arrive late: dedupe on `event_id`, and never let an older
`sequence` overwrite a newer one. Keep `Seen` in your own durable store
(Firestore, a SQL table with a TTL) so that it survives restarts; the
in-memory one here is for the example.

What `act` does with an event is what an integrator would:
- while RUNNING, say when it should finish: `eta` and its 80 % interval
  `eta_low`..`eta_high`, as the estimate stood at that change (left out when
  lrowatch has nothing to go on; `GET /operations/{id}` has the latest);
- once done, collect the failed items to resubmit: the event carries the first
  5 (`items.first_failed`); when `items.failed` says there are more, GET
  /operations/{id}/items?state=failed serves every one lrowatch keeps, page by page.

Needs: google-cloud-pubsub, requests, google-auth. The reader needs
roles/pubsub.subscriber on the subscription and roles/run.invoker on lrowatch's
submit function (LROWATCH_URL, the same variable the `lrowatch` CLI reads).
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import requests


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


def act(event: dict, lrowatch_url: str, say: Callable[[str], None] = print) -> None:
    """The effect: a line per change, with the ETA while running, then each failed item to resubmit."""
    line = f'{event["operation"]["name"]}: {event["previous_state"]} -> {event["state"]}'
    left = eta_text(event)
    say(f"{line}, {left}" if left else line)
    if not event["done"]:
        return
    for item in failed_items(event, lrowatch_url):
        # Document AI names the input document; a Vision import line may name none, only its index
        # (from 0, as Google counts; `lrowatch items` and editors count lines from 1).
        what = item.get("input") or f'line {item["index"] + 1} of the import CSV'
        say(f'  resubmit {what}: {item["status"].get("message", "")}')
    kept = event.get("items", {}).get("failed_kept")
    if kept is not None:
        say(f'  only the first {kept} failed items are kept; the rest are in the operation\'s own response')


def eta_text(event: dict, now: datetime | None = None) -> str | None:
    """`~12 min left (8–20 min, progress)`; None when not running or there is no estimate."""
    if event["state"] != "RUNNING" or not event.get("eta"):
        return None  # lrowatch leaves the fields out rather than guess
    now = now or datetime.now(timezone.utc)
    low, point, high = (max(math.ceil((_time(event[k]) - now).total_seconds() / 60), 0)
                        for k in ("eta_low", "eta", "eta_high"))
    return f'~{point} min left ({low}–{high} min, {event["eta_basis"]})'


def failed_items(event: dict, lrowatch_url: str, page_size: int = 100) -> list[dict]:
    """A finished operation's failed items: the event's first few, or every kept one when there are more."""
    items = event.get("items") or {}
    first = items.get("first_failed") or []
    if items.get("failed", 0) <= len(first):
        return first  # the event already has them all: no request
    url = f'{lrowatch_url.rstrip("/")}/operations/{event["operation"]["id"]}/items'
    failed, params = [], {"state": "failed", "page_size": page_size}
    while True:
        page = _get_json(url, params, lrowatch_url)
        failed += page["items"]
        if not page.get("next_page_token"):
            return failed
        params["page_token"] = page["next_page_token"]


def _get_json(url: str, params: dict, lrowatch_url: str) -> dict:
    headers = {}
    if lrowatch_url.startswith("https://"):  # a deployed function: a Google ID token for its URL, and only it
        import google.auth.transport.requests
        import google.oauth2.id_token

        audience = "/".join(lrowatch_url.split("/")[:3])
        token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
        headers["Authorization"] = f"Bearer {token}"
    response = requests.get(url, params=params, headers=headers, timeout=30, allow_redirects=False)
    response.raise_for_status()
    return response.json()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main(subscription: str, lrowatch_url: str) -> None:
    from google.cloud import pubsub_v1

    def effect(event: dict) -> None:
        act(event, lrowatch_url, lambda line: print(line, flush=True))

    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.subscribe(subscription, callback=callback(Seen(), effect)).result()


if __name__ == "__main__":
    main(sys.argv[1], os.environ["LROWATCH_URL"])
