"""docs/examples/ against the local stack: the Document AI producer hands its
operation to lrowatch over HTTP and over Pub/Sub, and the ordered consumer acts
once per event, in sequence order, through duplicates, reading the ETA and every
failed input to resubmit."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import requests

from tests.e2e.helpers import polling, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}


def example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


producer, consumer = example("producer_documentai"), example("consumer_ordered")


def client_operation(name: str):
    """What DocumentProcessorServiceClient.batch_process_documents returns: a google.api_core
    Operation whose `.operation.name` is the long-running operation's name."""
    from google.api_core import operation
    from google.longrunning import operations_pb2

    proto = operations_pb2.Operation(name=name, done=False)
    return operation.Operation(proto, refresh=lambda: proto, cancel=lambda: None,
                               result_type=operations_pb2.Operation)


def test_the_producer_hands_a_document_ai_operation_to_lrowatch_over_http(stack, sim):
    op = sim.create(kind="documentai", running_s=60)
    started = client_operation(op["name"])
    record = producer.track_over_http(started.operation.name, stack.urls["submit"], labels={"team": "ocr"})
    assert record["url"] == op["url"] and record["labels"] == {"team": "ocr"}  # the regional endpoint, built
    again = producer.track_over_http(started.operation.name, stack.urls["submit"], labels={"team": "ocr"})
    assert again["id"] == record["id"]


def test_the_producer_hands_a_document_ai_operation_to_lrowatch_over_pubsub(stack, sim):
    op = sim.create(kind="documentai", running_s=60)
    topic = stack.topology.topic_path(stack.settings.submissions_topic)
    assert producer.track_over_pubsub(client_operation(op["name"]).operation.name, topic, labels={"via": "pubsub"})

    def tracked():
        page = requests.get(f"{stack.urls['submit']}/operations", params={"label.via": "pubsub"}, timeout=10).json()
        return [r for r in page["operations"] if r["name"] == op["name"]]

    [record] = wait_for(tracked, 30, "the Pub/Sub submission to be tracked")
    assert record["url"] == op["url"]


def test_the_consumer_acts_once_per_event_in_sequence_order_through_duplicates(stack, sim):
    from google.cloud import pubsub_v1

    subscription = stack.topology.create_pull_subscription(stack.settings.events_topic, "example-consumer",
                                                           ordering=True)
    op = sim.create(kind="documentai", running_s=1, items=2)
    record = producer.track_over_http(op["name"], stack.urls["submit"])
    applied: list[dict] = []
    outcomes: list[str] = []
    seen = consumer.Seen()

    with pubsub_v1.SubscriberClient() as subscriber, polling(stack):
        streaming = subscriber.subscribe(subscription, callback=consumer.callback(seen, applied.append,
                                                                                   outcomes.append))
        try:
            wait_for(lambda: any(e["done"] for e in applied if e["operation"]["id"] == record["id"]), 60,
                     "the consumer to apply the final event")
            final = [e for e in applied if e["operation"]["id"] == record["id"]][-1]
            # Pub/Sub may deliver it again (here: published again, as an outbox republish would).
            stack.topology.publish(stack.settings.events_topic, final, ordering_key=record["id"],
                                   type=final["type"], event_id=final["event_id"])
            wait_for(lambda: "duplicate" in outcomes, 30, "the duplicate to reach the consumer")
        finally:
            streaming.cancel()
    ours = [e for e in applied if e["operation"]["id"] == record["id"]]
    sequences = [e["sequence"] for e in ours]
    assert sequences == sorted(set(sequences)) and ours[-1]["state"] == "SUCCEEDED"  # once each, in order
    assert seen.sequence[record["id"]] == final["sequence"]


def test_the_consumer_skips_other_types_and_late_older_events():
    seen, acted = consumer.Seen(), []
    event = {"type": "lro.state_changed", "event_id": "a-2", "sequence": 2, "operation": {"id": "a"}}
    assert consumer.on_event(event, seen, acted.append) == "applied"
    assert consumer.on_event({**event, "event_id": "a-1", "sequence": 1}, seen, acted.append) == "stale"
    assert consumer.on_event({"type": "lro.cancel_outcome", "event_id": "a-cancel"}, seen, acted.append) == "skipped"
    assert consumer.on_event(event, seen, acted.append) == "duplicate" and acted == [event]


def learnt_history(stack, service: str, location: str, durations_s: list[float]) -> None:
    """What the poller learns from finished operations of a kind, written where it reads it: an
    operation's first poll then has an estimate (a progress trend needs more than one poll)."""
    from functions.adapters.firestore_durations import FirestoreDurations
    from functions.adapters.firestore_store import FirestoreStore
    from functions.domain.adaptive import DurationStats, stats_key
    from functions.domain.learning import ANY_KIND

    stats = DurationStats()
    for duration in durations_s:
        stats.add(duration)
    store = FirestoreStore(stack.project, stack.settings.collection)
    FirestoreDurations(store, stack.settings.durations_collection).add(
        {stats_key(service, ANY_KIND, location): stats})


def test_the_consumer_reads_the_eta_and_every_failed_input_to_resubmit(stack, sim):
    from google.cloud import pubsub_v1

    # Before the first poll of a Speech operation: the poll process caches what it read for a minute.
    learnt_history(stack, "speech.googleapis.com", "global", [120 + 10 * n for n in range(20)])
    subscription = stack.topology.create_pull_subscription(stack.settings.events_topic, "example-consumer-act",
                                                           ordering=True)
    batch = sim.create(kind="documentai", running_s=1, items=40, failed_items=13)
    speech = sim.create(kind="generic", running_s=600)  # Speech-style progressPercent; still running at the end
    ids = {}
    for key, op in (("batch", batch), ("speech", speech)):
        answer = requests.post(f"{stack.urls['submit']}/operations", json={"url": op["url"], "policy": FAST},
                               timeout=10)
        assert answer.status_code == 201, answer.text
        ids[key] = answer.json()["id"]
    events: list[dict] = []
    said: list[str] = []

    def act(event: dict) -> None:
        # Seen only once acted on: the wait below must not end while the final event's items are still paging.
        consumer.act(event, stack.urls["submit"], said.append)
        events.append(event)

    def seen(key: str, state: str) -> bool:
        return any(e["operation"]["id"] == ids[key] and e["state"] == state for e in events)

    with pubsub_v1.SubscriberClient() as subscriber, polling(stack):
        streaming = subscriber.subscribe(subscription, callback=consumer.callback(consumer.Seen(), act))
        try:
            wait_for(lambda: seen("batch", "SUCCEEDED") and seen("speech", "RUNNING"), 60,
                     "the batch's final event and the Speech operation's RUNNING event")
        finally:
            streaming.cancel()

    [running] = [e for e in events if e["operation"]["id"] == ids["speech"] and e["state"] == "RUNNING"]
    assert running["eta_basis"] == "history"
    [eta_line] = [line for line in said if line.startswith(speech["name"])]
    assert re.fullmatch(r".*-> RUNNING, ~\d+ min left \(\d+–\d+ min, history\)", eta_line), eta_line

    [final] = [e for e in events if e["operation"]["id"] == ids["batch"] and e["done"]]
    assert len(final["items"]["first_failed"]) == 5  # the other 8 are only behind GET …/items
    op_id = batch["name"].rsplit("/", 1)[-1]
    inputs = [f"gs://sim-input/{op_id}/doc-{n}.pdf" for n in range(13)]
    resubmit = [line.split()[1].rstrip(":") for line in said if line.startswith("  resubmit ")]
    assert resubmit == inputs
    paged = consumer.failed_items(final, stack.urls["submit"], page_size=5)  # three pages, by next_page_token
    assert [i["input"] for i in paged] == inputs

