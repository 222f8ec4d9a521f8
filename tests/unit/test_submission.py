"""Validating a submission (contract §3) into a new record."""
from __future__ import annotations

from datetime import timedelta

import pytest

from functions.domain.errors import InvalidArgument
from functions.domain.names import build_ref
from functions.domain.policy import Policy
from functions.domain.states import State
from functions.domain.submission import check_notify_url, parse_submission
from tests.unit.factories import DOCAI_NAME, NOW

PREFIXES = ("https://ocr-service-abc.a.run.app", "https://hooks.example.com/lro/")
DOCAI_URL = f"https://us-documentai.googleapis.com/v1/{DOCAI_NAME}"


def submit(raw, *, default_policy=Policy(), prefixes=PREFIXES, shards=16, source="submit"):
    return parse_submission(raw, NOW, default_policy=default_policy, notify_url_prefixes=prefixes,
                            shards=shards, source=source)


def minimal(**extra):
    return {"name": DOCAI_NAME, "service": "documentai.googleapis.com", **extra}


CONTRACT_EXAMPLE = {
    "name": DOCAI_NAME,
    "service": "documentai.googleapis.com",
    "api_version": "v1",
    "quota_project": "my-billing-project",
    "labels": {"team": "ocr"},
    "correlation_id": "invoice-batch-42",
    "notify_topic": "projects/my-project/topics/ocr-done",
    "notify_url": "https://ocr-service-abc.a.run.app/lro-done",
    "policy": {"initial_delay_s": 5, "multiplier": 1.5, "max_delay_s": 300,
               "deadline_s": 86400, "cancel_on_deadline": False},
}

# ---- the happy paths -------------------------------------------------------------


def test_contract_example_becomes_a_pending_record():
    record = submit(CONTRACT_EXAMPLE)
    assert record.state is State.PENDING
    assert record.sequence == 0
    assert record.name == DOCAI_NAME
    assert record.service == "documentai.googleapis.com"
    assert record.endpoint == "us-documentai.googleapis.com"
    assert record.url == DOCAI_URL
    assert record.quota_project == "my-billing-project"
    assert record.labels == {"team": "ocr"}
    assert record.correlation_id == "invoice-batch-42"
    assert record.notify_topic == "projects/my-project/topics/ocr-done"
    assert record.notify_url == "https://ocr-service-abc.a.run.app/lro-done"
    assert record.policy["max_delay_s"] == 300
    assert record.submitted_at == record.updated_at == NOW
    assert record.next_poll_at == NOW + timedelta(seconds=5)
    assert record.deadline_at == NOW + timedelta(seconds=86400)


def test_name_and_service_alone_are_enough():
    record = submit(minimal())
    assert record.labels == {} and record.quota_project is None and record.notify_url is None
    assert record.policy == Policy().to_dict()


def test_short_service_name_is_canonicalised():
    assert submit(minimal(service="documentai")).service == "documentai.googleapis.com"


def test_url_alone_is_an_alternative_to_name_and_service():
    by_url = submit({"url": DOCAI_URL})
    by_name = submit(minimal())
    assert (by_url.id, by_url.name, by_url.service, by_url.endpoint) == \
        (by_name.id, by_name.name, by_name.service, by_name.endpoint)


def test_url_with_a_matching_api_version_is_accepted():
    assert submit({"url": DOCAI_URL, "api_version": "v1"}).api_version == "v1"


def test_id_is_the_operation_digest():
    assert submit(minimal()).id == build_ref(DOCAI_NAME, "documentai").id


def test_initial_delay_zero_polls_at_once():
    record = submit(minimal(policy={"initial_delay_s": 0}))
    assert record.next_poll_at == NOW


def test_first_poll_is_not_jittered():
    record = submit(minimal(policy={"initial_delay_s": 10}), default_policy=Policy(jitter=0.5))
    assert record.next_poll_at == NOW + timedelta(seconds=10)


def test_default_policy_fills_unspecified_fields():
    default = Policy(initial_delay_s=2, max_delay_s=60, deadline_s=3600)
    record = submit(minimal(policy={"multiplier": 2}), default_policy=default)
    assert record.policy["initial_delay_s"] == 2 and record.policy["multiplier"] == 2
    assert record.deadline_at == NOW + timedelta(seconds=3600)


def test_shard_is_derived_from_the_id_within_range():
    record = submit(minimal(), shards=16)
    assert record.shard == int(record.id[:8], 16) % 16
    assert submit(minimal(), shards=1).shard == 0
    assert submit(minimal(), shards=0).shard == 0


def test_source_is_recorded():
    assert submit(minimal(), source="submit_pubsub").source == "submit_pubsub"


def test_same_operation_submitted_twice_gives_the_same_id():
    assert submit(minimal()).id == submit({"url": DOCAI_URL, "labels": {"a": "b"}}).id


# ---- required fields and shape ----------------------------------------------------


@pytest.mark.parametrize("raw", [
    {},
    {"name": DOCAI_NAME},
    {"service": "documentai"},
    {"labels": {"team": "ocr"}},
    {"url": DOCAI_URL, "name": DOCAI_NAME},
    {"url": DOCAI_URL, "service": "documentai"},
    {"url": DOCAI_URL, "name": DOCAI_NAME, "service": "documentai"},
    {"url": DOCAI_URL, "api_version": "v1beta3"},
    {"url": "https://evil.com/v1/operations/1"},
    {"url": None},
    minimal(name=None),
    minimal(service=None),
    minimal(service="evil.com"),
    minimal(api_version="v1\n"),
    minimal(extra=1),
    minimal(Name="x"),
    minimal(operation_id="x"),
])
def test_incomplete_or_contradictory_submissions_are_refused(raw):
    with pytest.raises(InvalidArgument):
        submit(raw)


def test_both_url_and_name_are_refused_with_a_clear_message():
    with pytest.raises(InvalidArgument, match="either url"):
        submit({"url": DOCAI_URL, **minimal()})


def test_unknown_fields_are_refused_and_named():
    with pytest.raises(InvalidArgument, match="colour"):
        submit(minimal(colour="blue"))


@pytest.mark.parametrize("raw", [None, [], "name", 42, [minimal()]])
def test_a_submission_that_is_not_an_object_is_refused(raw):
    with pytest.raises(InvalidArgument, match="object"):
        submit(raw)


def test_bad_policy_is_refused():
    with pytest.raises(InvalidArgument):
        submit(minimal(policy={"multiplier": "fast"}))


# ---- labels --------------------------------------------------------------------


@pytest.mark.parametrize("labels", [
    {"team": "ocr"},
    {"a": ""},
    {"k_1-x": "v_1-y"},
    {"a" * 63: "b" * 63},
    {f"k{i}": "v" for i in range(64)},
    None,
])
def test_labels_following_google_rules_are_accepted(labels):
    assert submit(minimal(labels=labels)).labels == (labels or {})


@pytest.mark.parametrize("labels", [
    {"Team": "ocr"},
    {"team": "OCR"},
    {"1team": "x"},
    {"": "x"},
    {"a" * 64: "x"},
    {"a": "b" * 64},
    {"team": 1},
    {"team": None},
    {"team": ["ocr"]},
    {"team": "ocr\n"},
    {"team\n": "ocr"},
    {"team": "o c r"},
    {"team.name": "x"},
    {f"k{i}": "v" for i in range(65)},
    ["team", "ocr"],
    "team=ocr",
])
def test_labels_breaking_google_rules_are_refused(labels):
    with pytest.raises(InvalidArgument):
        submit(minimal(labels=labels))


# ---- quota project, correlation id, notify topic --------------------------------------


@pytest.mark.parametrize("value", ["my-billing-project", "abcdef", "123456789012", "a" * 30])
def test_quota_project_ids_and_numbers_are_accepted(value):
    assert submit(minimal(quota_project=value)).quota_project == value


@pytest.mark.parametrize("value", ["", "abc", "My-Project", "proj-", "a" * 31, "p\r\nX-Evil: 1",
                                   "my-project\n", "my project", 123, ["my-project"]])
def test_bad_quota_projects_are_refused(value):
    with pytest.raises(InvalidArgument, match="quota_project"):
        submit(minimal(quota_project=value))


@pytest.mark.parametrize("value", ["invoice-batch-42", "x", "a b c", "!" + "~" * 255])
def test_printable_correlation_ids_are_accepted(value):
    assert submit(minimal(correlation_id=value)).correlation_id == value


@pytest.mark.parametrize("value", ["", " leading", "x" * 257, "line\nbreak", "tab\t", "é", 42, "x\n"])
def test_bad_correlation_ids_are_refused(value):
    with pytest.raises(InvalidArgument, match="correlation_id"):
        submit(minimal(correlation_id=value))


@pytest.mark.parametrize("value", [
    "projects/my-project/topics/ocr-done",
    "projects/my-project/topics/Ocr.Done_~+%x",
])
def test_full_topic_paths_are_accepted_as_notify_topic(value):
    assert submit(minimal(notify_topic=value)).notify_topic == value


@pytest.mark.parametrize("value", [
    "ocr-done",
    "projects/my-project/topics/",
    "projects/my-project/topics/go",  # topic ids are at least 3 characters
    "projects/my-project/topics/1abc",
    "projects/My-Project/topics/abc",
    "projects/my-project/subscriptions/abc",
    "projects/my-project/topics/abc/extra",
    "projects/my-project/topics/abc\n",
    "//pubsub.googleapis.com/projects/my-project/topics/abc",
    42,
])
def test_malformed_notify_topics_are_refused(value):
    with pytest.raises(InvalidArgument, match="notify_topic"):
        submit(minimal(notify_topic=value))


# ---- notify_url allowlist -----------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://ocr-service-abc.a.run.app",
    "https://ocr-service-abc.a.run.app/",
    "https://ocr-service-abc.a.run.app/lro-done",
    "https://ocr-service-abc.a.run.app?x=1",
    "https://hooks.example.com/lro/",
    "https://hooks.example.com/lro/done?team=ocr",
])
def test_notify_urls_under_an_allowed_prefix_are_accepted(url):
    assert check_notify_url(url, PREFIXES) == url


@pytest.mark.parametrize("url", [
    "http://ocr-service-abc.a.run.app/lro-done",
    "HTTP://ocr-service-abc.a.run.app/lro-done",
    "ftp://ocr-service-abc.a.run.app/lro-done",
    "https://ocr-service-abc.a.run.app.evil.com/x",
    "https://ocr-service-abc.a.run.app.evil.com",
    "https://ocr-service-abc.a.run.appevil.com/x",
    "https://ocr-service-abc.a.run.app@evil.com/x",
    "https://user:pw@ocr-service-abc.a.run.app/x",
    "https://ocr-service-abc.a.run.app:8443/x",
    "https://ocr-service-abc.a.run.app#frag",
    "https://ocr-service-abc.a.run.app/x#frag",
    "https://ocr-service-abc.a.run.app/x\r\nHost: evil.com",
    "https://ocr-service-abc.a.run.app/x y",
    "https://ocr-service-abc.a.run.app\\@evil.com/x",
    "https://hooks.example.com/lro",
    "https://hooks.example.com/lroevil",
    "https://hooks.example.com/other",
    "https://hooks.example.com/lro/../admin",
    "https://hooks.example.com/lro/%2e%2e/admin",
    "https://hooks.example.com/lro/%2E%2E%2Fadmin",
    "https://hooks.example.com/lro/./x",
    "https://evil.com/https://hooks.example.com/lro/",
    "https://evil.com/?https://ocr-service-abc.a.run.app",
    "https://169.254.169.254/computeMetadata/v1/",
    "https://" + "a" * 2048,
    "",
    "https://",
    "https://[::1/x",
    "https://ocr-service-abc.a.run.app/lro-done\x0b",
    "https://ocr-service-abc.a.run.app\x7f/lro-done",
    "https://ocr-service-abc.a.run.app/lro-done\x00",
    "https://ocr-service-abc.a.run.app/caf\u00e9",
    "https://ocr-service-abc.a.run.app/\ud800",
    None,
    42,
])
def test_notify_urls_outside_the_allowlist_or_unsafe_are_refused(url):
    with pytest.raises(InvalidArgument):
        check_notify_url(url, PREFIXES)


def test_notify_url_is_refused_when_no_prefixes_are_configured():
    with pytest.raises(InvalidArgument, match="allowlist"):
        check_notify_url("https://ocr-service-abc.a.run.app/x", ())


def test_notify_url_is_checked_on_submission():
    with pytest.raises(InvalidArgument):
        submit(minimal(notify_url="https://ocr-service-abc.a.run.app.evil.com/x"))
    assert submit(minimal(notify_url="https://hooks.example.com/lro/x")).notify_url == "https://hooks.example.com/lro/x"


def test_null_optional_fields_are_treated_as_absent():
    record = submit(minimal(quota_project=None, correlation_id=None, notify_topic=None, notify_url=None,
                            labels=None, policy=None, api_version=None))
    assert record.quota_project is None and record.labels == {} and record.api_version == "v1"


@pytest.mark.parametrize("field, value", [
    ("name", "projects/123/locations/us/operations/op\x0b1"),
    ("name", "projects/123/locations/us/operations/op\x7f"),
    ("name", "projects/123/locations/us/operations/\ud800"),
    ("url", "https://us-documentai.googleapis.com/v1/projects/123/locations/us/operations/a\x0b"),
    ("labels", {"team`x": "ocr"}),
    ("labels", {"team": "ocr\x7f"}),
    ("labels", {"t\u00e9am": "ocr"}),
    ("correlation_id", "batch\x0b42"),
    ("notify_topic", "projects/my-project/topics/t\x7fopic"),
    ("quota_project", "my-project\x0b"),
])
def test_control_characters_surrogates_and_malformed_label_keys_are_refused(field, value):
    raw = {"name": "projects/123/locations/us/operations/op1", "service": "documentai", field: value}
    if field == "url":
        del raw["name"], raw["service"]
    with pytest.raises(InvalidArgument):
        submit(raw)


def test_a_resubmission_names_the_settings_that_differ_and_ignores_those_left_out():
    from functions.domain.submission import differing_settings

    first = {"name": DOCAI_NAME, "service": "documentai", "labels": {"team": "ocr"}, "policy": {"max_delay_s": 60}}
    existing = submit(first)
    assert differing_settings(first, submit(first), existing) == []
    bare = {"name": DOCAI_NAME, "service": "documentai"}
    assert differing_settings(bare, submit(bare), existing) == []
    other = {**first, "labels": {"team": "web"}, "correlation_id": "x-1", "policy": {"max_delay_s": 30}}
    assert differing_settings(other, submit(other), existing) == ["labels", "correlation_id", "policy.max_delay_s"]
    versioned = {**bare, "api_version": "v1beta3"}
    assert differing_settings(versioned, submit(versioned), existing) == ["api_version"]
