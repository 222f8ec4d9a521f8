"""poll_route: a plain JSON body (Cloud Scheduler, a person) or a Pub/Sub push envelope (shard runs)."""
from __future__ import annotations

import base64
import io
import json
import logging
from types import SimpleNamespace

import pytest

from functions.adapters.http_api import poll_route
from functions.domain.errors import TransientError


class _Poll:
    def __init__(self, fail: Exception | None = None):
        self.calls = []
        self.fail = fail

    def run(self, budget_s=None, shard=None, *, schedule_time=None):
        self.calls.append((budget_s, shard, schedule_time))
        if self.fail:
            raise self.fail
        return SimpleNamespace(to_json=lambda: {"shard": shard, "skipped": None})


def _request(body) -> SimpleNamespace:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return SimpleNamespace(method="POST", content_length=len(raw), stream=io.BytesIO(raw),
                           mimetype="application/json", headers={}, path="/")


def _push(data, message_id: str = "m-7") -> dict:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"message": {"data": base64.b64encode(raw).decode(), "attributes": {"type": "poll_shard"},
                        "messageId": message_id}, "subscription": "projects/p/subscriptions/lro-poll-shards-poll"}


def test_a_shard_message_starts_that_shards_run_with_its_budget():
    poll = _Poll()
    body, status, _ = poll_route(_request(_push(
        {"type": "poll_shard", "shard": 3, "budget_s": 40, "requested_at": "2024-05-01T12:00:00.000Z"})), poll)
    assert status == 200 and body["shard"] == 3
    assert poll.calls == [(40, 3, None)]


def test_a_plain_body_still_runs_as_before():
    poll = _Poll()
    assert poll_route(_request({"budget_s": 5, "shard": 1}), poll)[1] == 200
    assert poll.calls == [(5, 1, None)]


@pytest.mark.parametrize("data", [
    b"not json",
    {"type": "something_else", "shard": 1, "budget_s": 5},
    {"type": "poll_shard", "budget_s": 5},  # no shard: an unsharded run from a message could fan out again
    {"type": "poll_shard", "shard": -1, "budget_s": 5},
    {"type": "poll_shard", "shard": 1, "budget_s": "soon"},
    {"type": "poll_shard", "shard": 1, "budget_s": 5, "extra": True},
    ["poll_shard", 1],
])
def test_a_poison_shard_message_is_acknowledged_and_logged_at_error(caplog, data):
    poll = _Poll()
    with caplog.at_level(logging.INFO):
        body, status, _ = poll_route(_request(_push(data, "m-42")), poll)
    assert 200 <= status < 300 and "dropped" in body  # a 4xx would be redelivered until dead-lettered
    assert poll.calls == []
    (entry,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert entry.message_id == "m-42" and entry.subscription.endswith("lro-poll-shards-poll")


def test_an_envelope_without_data_is_poison_too():
    body, status, _ = poll_route(_request({"message": {"messageId": "m-1"}, "subscription": "s"}), _Poll())
    assert status == 200 and "dropped" in body


@pytest.mark.parametrize("body", [{"budget_s": "soon"}, {"shard": -1}, {"what": 1}, [1]])
def test_a_plain_call_with_a_bad_body_is_still_a_400(body):
    poll = _Poll()
    assert poll_route(_request(body), poll)[1] == 400
    assert poll.calls == []


def test_a_failing_shard_run_answers_5xx_so_pubsub_redelivers_it():
    poll = _Poll(fail=TransientError("firestore down"))
    assert poll_route(_request(_push({"type": "poll_shard", "shard": 0, "budget_s": 5})), poll)[1] >= 500
