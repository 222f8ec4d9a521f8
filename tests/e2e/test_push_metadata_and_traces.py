"""Through the real functions, emulators and simulator: the push envelope's metadata
(deliveryAttempt, orderingKey, subscription) reaches handle's and submit_pubsub's logs,
log lines carry the trace, span and sampling decision, and one trace follows an
operation from the poll run that observed a change, through its event's
`traceparent` attribute, into handle.

The Pub/Sub emulator's push body carries the subscription but neither
deliveryAttempt nor orderingKey, which Pub/Sub itself sends (deliveryAttempt
when the subscription has a dead-letter policy, as lrowatch's all do). Those
two are proven by POSTing a push body of Pub/Sub's documented shape to the
function processes themselves."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from functions.simulator.client import SimulatorAdmin
from tests.e2e.helpers import wait_for

FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}


def log_entries(stack, function: str) -> list[dict]:
    lines = stack.functions[function].log_text().splitlines()[1:]  # [0] is the command line
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_one_trace_runs_from_the_poll_that_saw_the_change_through_the_event_into_handle(stack):
    sim = SimulatorAdmin(stack.urls["simulator"])
    tap = stack.topology.create_pull_subscription(stack.settings.events_topic, f"tap-{uuid.uuid4().hex[:8]}")
    op = sim.create(kind="documentai", running_s=0.3)
    answer = requests.post(stack.urls["submit"], json={"url": op["url"], "policy": FAST}, timeout=30)
    assert answer.status_code == 201, answer.text
    operation_id = answer.json()["id"]
    trace_id, span_id = uuid.uuid4().hex, "00f067aa0ba902b7"

    def polled_to_the_end():
        requests.post(stack.urls["poll"], json={"budget_s": 1}, timeout=60,
                      headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
        record = requests.get(f"{stack.urls['submit']}/operations/{operation_id}", timeout=10).json()
        return record["done"]

    wait_for(polled_to_the_end, 60, "the operation to finish", every=0.5)
    messages = stack.topology.pull_all(tap, timeout=5, expect=2)
    ours = [m for m in messages if m.ordering_key == operation_id]
    assert ours and all(m.attributes["traceparent"].split("-")[1] == trace_id for m in ours)
    assert all(m.attributes["traceparent"].endswith("-01") for m in ours)

    def handled():
        return [e for e in log_entries(stack, "handle") if e.get("outcome") == "completed"
                and e.get("logging.googleapis.com/trace", "").endswith(trace_id)]

    [entry] = wait_for(handled, 30, "handle to complete the operation in the poll run's trace")
    assert entry["logging.googleapis.com/trace"] == f"projects/{stack.project}/traces/{trace_id}"
    assert len(entry["logging.googleapis.com/spanId"]) == 16 and entry["logging.googleapis.com/trace_sampled"]
    assert entry["subscription"] == stack.subscriptions["events"]

    polls = [e for e in log_entries(stack, "poll") if e["message"] == "poll run finished"
             and e.get("logging.googleapis.com/trace", "").endswith(trace_id)]
    assert polls and polls[0]["logging.googleapis.com/spanId"] == span_id


def test_submit_pubsub_continues_a_publishers_trace_from_the_message_attribute(stack):
    sim = SimulatorAdmin(stack.urls["simulator"])
    op = sim.create(kind="vision", running_s=60)
    trace_id = uuid.uuid4().hex
    stack.topology.publish(stack.settings.submissions_topic, {"url": op["url"]},
                           traceparent=f"00-{trace_id}-{'1' * 16}-00")

    def tracked():
        return [e for e in log_entries(stack, "submit_pubsub")
                if e.get("logging.googleapis.com/trace", "").endswith(trace_id) and e["message"] == "operation tracked"]

    [entry] = wait_for(tracked, 30, "submit_pubsub to log the submission in the publisher's trace")
    assert entry["logging.googleapis.com/trace_sampled"] is False and entry["logging.googleapis.com/spanId"] == "1" * 16


def pubsub_push_body(data: bytes, subscription: str, attempt: int, ordering_key: str | None = None) -> dict:
    """A push request body as Pub/Sub itself sends it (not the emulator)."""
    message = {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex[:12],
               "publishTime": "2024-05-01T12:00:00.000Z", "attributes": {"type": "lro.state_changed"}}
    if ordering_key:
        message["orderingKey"] = ordering_key
    return {"message": message, "subscription": subscription, "deliveryAttempt": attempt}


@pytest.mark.parametrize("function, subscription", [("handle", "events"), ("submit_pubsub", "submissions")])
def test_delivery_attempt_and_ordering_key_of_a_push_reach_the_log(stack, function, subscription):
    key = uuid.uuid4().hex
    body = pubsub_push_body(b"{not json", stack.subscriptions[subscription], attempt=3, ordering_key=key)
    answer = requests.post(stack.urls[function], json=body, timeout=30)
    assert answer.status_code < 300  # poison: acknowledged, never retried forever

    def dropped():
        return [e for e in log_entries(stack, function) if e.get("ordering_key") == key]

    [entry] = wait_for(dropped, 20, f"{function} to log the dropped message")
    assert entry["severity"] == "ERROR" and entry["delivery_attempt"] == 3
    assert entry["subscription"] == stack.subscriptions[subscription]
    assert entry["message_id"] == body["message"]["messageId"]
