"""Dead-letter replay: re-drive messages a push subscription gave up on.

    python -m functions.dlq replay --subscription lro-events-handle-dlq-hold --topic lro-events [--limit N] [--dry-run]

Pulls from a pull subscription on a dead-letter topic and republishes each
message to the source topic with the same data, attributes and ordering key,
then acknowledges it — only after the publish succeeded, so a failure leaves
the message in the dead-letter subscription (at least once, never lost;
handle dedupes by event_id). Pub/Sub's own dead-letter attributes
(`CloudPubSubDeadLetter*`) are dropped: they describe the failed delivery, not
the message. `--dry-run` pulls and reports, then hands the messages back
(ack deadline 0) without publishing.

Short names resolve in GOOGLE_CLOUD_PROJECT (or --project); the standard
PUBSUB_EMULATOR_HOST switch applies.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
PULL_BATCH = 100
PULL_TIMEOUT_S = 5.0
# A pull may come back empty while messages remain (Pub/Sub answers from whichever
# servers respond in time): only this many empty pulls in a row mean "drained".
EMPTY_PULLS = 2


class ReplayError(Exception):
    """A republish failed; the message stays in the dead-letter subscription."""


@dataclass
class ReplayReport:
    subscription: str
    topic: str
    dry_run: bool
    pulled: int = 0
    republished: int = 0
    message_ids: list[str] = field(default_factory=list)  # the dead letters' ids, in order

    def to_json(self) -> dict:
        return asdict(self)


def replay(subscription: str, topic: str, *, project: str | None = None, limit: int | None = None,
           dry_run: bool = False, subscriber=None, publisher=None) -> ReplayReport:
    """Move up to `limit` messages (all, if None) from `subscription` back to `topic`."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    subscription = _path(subscription, project, "subscriptions")
    topic = _path(topic, project, "topics")
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    publisher = publisher or pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
    report = ReplayReport(subscription, topic, dry_run)
    empty = 0
    while (limit is None or report.pulled < limit) and empty < EMPTY_PULLS:
        want = PULL_BATCH if limit is None else min(PULL_BATCH, limit - report.pulled)
        try:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": want},
                                       timeout=PULL_TIMEOUT_S)
        except gexc.DeadlineExceeded:
            response = None
        received = list(response.received_messages) if response else []
        if not received:
            empty += 1
            continue
        empty = 0
        report.pulled += len(received)
        report.message_ids += [r.message.message_id for r in received]
        if dry_run:
            _hand_back(subscriber, subscription, [r.ack_id for r in received])
            break  # handed-back messages would be pulled again
        _republish(publisher, subscriber, subscription, topic, received, report)
    return report


def _republish(publisher, subscriber, subscription: str, topic: str, received: list, report: ReplayReport) -> None:
    futures = [(r, publisher.publish(topic, r.message.data, ordering_key=r.message.ordering_key,
                                     **original_attributes(r.message.attributes)))
               for r in received]
    acked, failed = [], []
    for item, future in futures:
        try:
            future.result(timeout=60)
            acked.append(item.ack_id)
        except Exception as exc:  # noqa: BLE001 — any failure: keep the dead letter
            failed.append((item, exc))
            if item.message.ordering_key:  # a failed ordered publish pauses its key
                publisher.resume_publish(topic, item.message.ordering_key)
    if acked:
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": acked})
        report.republished += len(acked)
    if failed:
        _hand_back(subscriber, subscription, [item.ack_id for item, _ in failed])
        item, exc = failed[0]
        raise ReplayError(f"{len(failed)} message(s) not republished (first: {item.message.message_id}: "
                          f"{str(exc)[:200]}); they stay in {subscription}") from exc


def original_attributes(attributes) -> dict[str, str]:
    """The message's own attributes, without those Pub/Sub added when dead-lettering it."""
    return {k: v for k, v in dict(attributes).items() if not k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)}


def _hand_back(subscriber, subscription: str, ack_ids: list[str]) -> None:
    subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": ack_ids,
                                            "ack_deadline_seconds": 0})


def _path(name: str, project: str, kind: str) -> str:
    if name.startswith("projects/"):
        return name
    if not project:
        raise SystemExit(f"give a full projects/P/{kind}/NAME path, --project or GOOGLE_CLOUD_PROJECT")
    return f"projects/{project}/{kind}/{name}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.dlq", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("replay", help="republish dead-lettered messages to their source topic")
    run.add_argument("--subscription", required=True, help="pull subscription on the dead-letter topic")
    run.add_argument("--topic", required=True, help="the source topic to republish to")
    run.add_argument("--project", help="project of short names (default: GOOGLE_CLOUD_PROJECT)")
    run.add_argument("--limit", type=int, help="at most this many messages (default: all)")
    run.add_argument("--dry-run", action="store_true", help="report what would be replayed; change nothing")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        report = replay(args.subscription, args.topic, project=args.project, limit=args.limit,
                        dry_run=args.dry_run)
    except ReplayError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(report.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
