"""Notifier with a fake session: webhook retries, ID token audience, local mode."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests

from functions.adapters.notifier import Notifier, NotifyUnavailable, audience_of
from functions.config import Settings
from functions.domain import cloudevents
from functions.domain.errors import InvalidArgument
from functions.domain.states import State
from tests.unit.factories import make_record

URL = "https://hooks.example.com/lro/done"
CLOUD = Settings(project="p", notify_url_prefixes=("https://hooks.example.com/",))
LOCAL = Settings(project="p", notify_url_prefixes=("https://hooks.example.com/",), api_base_url="http://127.0.0.1:1")


class FakeSession:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[dict] = []
        self.trust_env = True

    def post(self, url, **kwargs):
        self.calls.append({"url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        response = requests.Response()
        response.status_code = answer
        return response


def _record(**changes):
    return make_record(state=State.SUCCEEDED, done=True, notify_url=URL, **changes)


def _notifier(settings, *answers, **kwargs):
    session = FakeSession(*answers)
    tokens: list[str] = []
    notifier = Notifier(None, settings, session=session, sleep=lambda s: None,
                        id_token=lambda aud: tokens.append(aud) or "signed-token", **kwargs)
    return notifier, session, tokens


def test_the_webhook_gets_a_google_id_token_for_the_receiving_services_url():
    notifier, session, tokens = _notifier(CLOUD, 200)
    outcome = notifier.send("notify_url", _record(), "e-1")
    assert outcome == {"attempts": 1, "status": 200, "error": None, "delivered": True}
    assert tokens == ["https://hooks.example.com"]
    assert session.calls[0]["headers"]["Authorization"] == "Bearer signed-token"
    assert session.calls[0]["allow_redirects"] is False and session.calls[0]["verify"] is True
    assert session.trust_env is False


def test_transient_webhook_failures_are_retried_and_the_final_outcome_returned():
    notifier, session, _ = _notifier(CLOUD, 503, requests.ConnectionError("reset"), 204)
    assert notifier.send("notify_url", _record(), "e-2") == {
        "attempts": 3, "status": 204, "error": None, "delivered": True}


@pytest.mark.parametrize("answers", [(500, 429, 502), (503, 503, 503), (503, requests.ConnectionError("reset"),
                                                                      requests.Timeout("slow")), (408, 408, 408)])
def test_a_webhook_that_keeps_failing_transiently_asks_for_redelivery_not_a_final_outcome(answers):
    notifier, session, _ = _notifier(CLOUD, *answers)
    with pytest.raises(NotifyUnavailable, match="failed 3 times"):
        notifier.send("notify_url", _record(), "e-3")
    assert len(session.calls) == 3


def test_a_redirect_from_the_webhook_is_a_final_refusal_not_followed():
    notifier, session, _ = _notifier(CLOUD, 302)
    assert notifier.send("notify_url", _record(), "e-6") == {"attempts": 1, "status": 302, "error": None,
                                                             "delivered": False}


def test_a_client_error_from_the_webhook_is_not_retried():
    notifier, session, _ = _notifier(CLOUD, 403)
    assert notifier.send("notify_url", _record(), "e-4")["delivered"] is False and len(session.calls) == 1


def test_a_url_no_longer_in_the_allowlist_is_refused_at_send_time():
    notifier, session, _ = _notifier(Settings(project="p", notify_url_prefixes=("https://other.example.com/",)), 200)
    with pytest.raises(InvalidArgument):
        notifier.send("notify_url", _record(), "e-5")
    assert session.calls == []


def test_local_mode_sends_no_token_and_may_trust_a_test_ca_bundle(monkeypatch):
    monkeypatch.setenv("LRO_NOTIFY_CA_BUNDLE", "/tmp/ca.pem")
    notifier, session, tokens = _notifier(LOCAL, 200)
    notifier.send("notify_url", _record(), "e-6")
    assert tokens == [] and "Authorization" not in session.calls[0]["headers"]
    assert session.calls[0]["verify"] == "/tmp/ca.pem"


def test_the_ca_bundle_variable_is_ignored_outside_local_mode(monkeypatch):
    monkeypatch.setenv("LRO_NOTIFY_CA_BUNDLE", "/tmp/ca.pem")
    notifier, session, _ = _notifier(CLOUD, 200)
    notifier.send("notify_url", _record(), "e-7")
    assert session.calls[0]["verify"] is True


def test_channels_are_those_the_record_asks_for():
    assert Notifier.channels(_record(notify_topic="projects/my-project/topics/t")) == ["notify_topic", "notify_url"]
    assert Notifier.channels(make_record()) == []


def test_the_audience_is_scheme_and_host():
    assert audience_of("https://svc-abc.a.run.app/lro/done?x=1") == "https://svc-abc.a.run.app"


def test_the_webhook_request_carries_cloudevents_binary_mode_headers():
    notifier, session, _ = _notifier(CLOUD, 204)
    record = _record(completed_at=datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    notifier.send("notify_url", record, "e-9")
    headers = session.calls[0]["headers"]
    body = json.loads(session.calls[0]["data"])
    assert headers["ce-specversion"] == "1.0" and headers["ce-id"] == "e-9" == body["event_id"]
    assert headers["ce-type"] == "lro.notification" == body["type"]
    assert headers["ce-subject"] == record.name and headers["ce-source"] == "//lrowatch/projects/p/collections/lro_operations"
    assert headers["ce-time"] == body["completed_at"] == "2024-05-01T12:00:00.000Z" and headers["Content-Type"] == "application/json"


def test_cloudevent_header_values_are_percent_encoded_where_http_requires_it():
    headers = cloudevents.binary_headers(
        {"event_id": "e-1", "type": "t", "operation": {"name": 'operations/a"b%c é'}}, "//lrowatch/x")
    assert headers["ce-subject"] == "operations/a%22b%25c %C3%A9"
    assert "ce-time" not in headers  # absent, never empty


class FailingPublisher:
    def __init__(self, exc):
        self.exc = exc

    def publish_one(self, topic, message):
        raise self.exc


def test_a_notify_topic_that_does_not_exist_is_a_final_not_delivered():
    from google.api_core import exceptions as gexc

    notifier = Notifier(FailingPublisher(gexc.NotFound("Topic not found")), CLOUD, session=FakeSession())
    outcome = notifier.send("notify_topic", _record(notify_topic="projects/p/topics/gone"), "e-7")
    assert outcome["delivered"] is False and "NotFound" in outcome["error"]


def test_a_notify_topic_failure_that_may_pass_is_raised_for_redelivery():
    from google.api_core import exceptions as gexc

    notifier = Notifier(FailingPublisher(gexc.ServiceUnavailable("try later")), CLOUD, session=FakeSession())
    with pytest.raises(gexc.ServiceUnavailable):
        notifier.send("notify_topic", _record(notify_topic="projects/p/topics/t"), "e-8")
