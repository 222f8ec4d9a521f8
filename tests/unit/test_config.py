"""Environment → Settings (contract §2)."""
from __future__ import annotations

import json
import logging

import pytest

from functions import config
from functions.config import Settings
from functions.domain.errors import ConfigError
from functions.domain.policy import Policy

BASE = {"GOOGLE_CLOUD_PROJECT": "my-project"}


def settings(**env):
    return Settings.from_env({**BASE, **env})


def test_contract_variable_names_are_exactly_those_of_section_2():
    assert config.ENV_PROJECT == "GOOGLE_CLOUD_PROJECT"
    assert config.ENV_COLLECTION == "LRO_COLLECTION"
    assert config.ENV_EVENTS_TOPIC == "LRO_EVENTS_TOPIC"
    assert config.ENV_COMMANDS_TOPIC == "LRO_COMMANDS_TOPIC"
    assert config.ENV_SUBMISSIONS_TOPIC == "LRO_SUBMISSIONS_TOPIC"
    assert config.ENV_API_BASE_URL == "LRO_API_BASE_URL"
    assert set(config.LOCAL_ONLY_ENV) == {"LRO_API_BASE_URL", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                                         "LRO_NOTIFY_CA_BUNDLE"}


def test_defaults_match_the_contract():
    s = settings()
    assert s.project == "my-project"
    assert s.collection == "lro_operations"
    assert s.events_topic == "lro-events"
    assert s.commands_topic == "lro-commands"
    assert s.submissions_topic == "lro-submissions"
    assert s.api_base_url is None
    assert s.notify_url_prefixes == ()
    assert s.default_policy == Policy()
    assert s.watch_scopes == ()
    assert s.log_level == "INFO"


def test_from_env_defaults_equal_the_dataclass_defaults():
    assert settings() == Settings(project="my-project")


def test_project_is_required():
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        Settings.from_env({})
    with pytest.raises(ConfigError):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "  "})


def test_empty_values_fall_back_to_defaults():
    s = settings(LRO_COLLECTION="", LRO_EVENTS_TOPIC="", LRO_POLL_BATCH="", LRO_API_BASE_URL="")
    assert (s.collection, s.events_topic, s.poll_batch, s.api_base_url) == ("lro_operations", "lro-events", 500, None)


def test_values_are_read_from_the_environment():
    s = settings(LRO_COLLECTION="ops", LRO_EVENTS_TOPIC="projects/other/topics/ev", LRO_COMMANDS_TOPIC="cmd",
                 LRO_SUBMISSIONS_TOPIC="sub", LRO_API_BASE_URL="http://127.0.0.1:9000/",
                 LRO_POLL_CONCURRENCY="8", LRO_SHARDS="4", LRO_LEASE_S="30", LRO_LOG_LEVEL="debug")
    assert (s.collection, s.commands_topic, s.submissions_topic) == ("ops", "cmd", "sub")
    assert s.api_base_url == "http://127.0.0.1:9000"
    assert (s.poll_concurrency, s.shards, s.lease_s) == (8, 4, 30.0)
    assert isinstance(s.poll_concurrency, int)
    assert s.log_level == "DEBUG"


def test_topics_accept_a_short_id_or_a_full_path():
    s = settings(LRO_EVENTS_TOPIC="projects/other/topics/ev")
    assert s.topic_path(s.events_topic) == "projects/other/topics/ev"
    assert s.topic_path(s.commands_topic) == "projects/my-project/topics/lro-commands"


def test_derived_collections_follow_the_main_collection():
    s = settings(LRO_COLLECTION="ops")
    assert (s.outbox_collection, s.claims_collection) == ("ops_outbox", "ops_claims")


def test_default_policy_is_read_as_json():
    s = settings(LRO_DEFAULT_POLICY=json.dumps({"initial_delay_s": 1, "max_delay_s": 30}))
    assert s.default_policy.initial_delay_s == 1 and s.default_policy.max_delay_s == 30


@pytest.mark.parametrize("raw", ["{not json", "[1]", '"x"', '{"multiplier": 50}', '{"initial_delay_s": -1}',
                                 '{"bogus": 1}', '{"initial_delay_s": 500, "max_delay_s": 100}'])
def test_malformed_or_out_of_range_default_policy_is_a_config_error(raw):
    with pytest.raises(ConfigError, match="LRO_DEFAULT_POLICY|JSON|policy"):
        settings(LRO_DEFAULT_POLICY=raw)


def test_notify_url_prefixes_are_split_and_checked():
    s = settings(LRO_NOTIFY_URL_PREFIXES=" https://a.run.app/ , https://hooks.example.com/lro/,")
    assert s.notify_url_prefixes == ("https://a.run.app/", "https://hooks.example.com/lro/")


@pytest.mark.parametrize("prefix", ["http://a.run.app/", "https://a.run.app", "a.run.app/", "https:/x/"])
def test_notify_url_prefixes_must_be_https_host_slash(prefix):
    with pytest.raises(ConfigError, match="LRO_NOTIFY_URL_PREFIXES"):
        settings(LRO_NOTIFY_URL_PREFIXES=prefix)


def test_watch_scopes_are_read_as_json():
    raw = json.dumps([{"service": "dataproc", "parent": "projects/p/regions/us-central1"},
                      {"service": "documentai", "parent": "projects/p/locations/eu", "filter": "done=false"}])
    s = settings(LRO_WATCH_SCOPES=raw)
    assert s.watch_scopes == (("dataproc", "projects/p/regions/us-central1", ""),
                              ("documentai", "projects/p/locations/eu", "done=false"))


@pytest.mark.parametrize("service, parent", [
    ("vision", "projects/p/locations/us"),  # Vision lists only at v1/operations
    ("bigtableadmin", "operations/projects/p/instances/i"),  # Bigtable admin publishes no list
])
def test_watch_scopes_are_refused_where_the_api_publishes_no_list(service, parent):
    with pytest.raises(ConfigError, match="publishes no :list"):
        settings(LRO_WATCH_SCOPES=json.dumps([{"service": service, "parent": parent}]))


def test_a_watch_scope_outside_the_apis_published_names_is_refused():
    with pytest.raises(ConfigError, match="names look like"):
        settings(LRO_WATCH_SCOPES=json.dumps([{"service": "dataproc", "parent": "buckets/b"}]))


@pytest.mark.parametrize("raw", ["nope", '[{"service": "vision"}]', "[1]"])
def test_malformed_watch_scopes_are_a_config_error(raw):
    with pytest.raises(ConfigError):
        settings(LRO_WATCH_SCOPES=raw)


@pytest.mark.parametrize("name, value", [
    ("LRO_POLL_BUDGET_S", "fast"),
    ("LRO_POLL_BUDGET_S", "0"),
    ("LRO_POLL_BUDGET_S", "99999"),
    ("LRO_POLL_CONCURRENCY", "0"),
    ("LRO_POLL_CONCURRENCY", "-4"),
    ("LRO_POLL_CONCURRENCY", "1e9"),
    ("LRO_POLL_BATCH", "501"),
    ("LRO_POLL_BATCH", "ten"),
    ("LRO_LEASE_S", "1"),
    ("LRO_SHARDS", "0"),
    ("LRO_SHARDS", "1000"),
    ("LRO_MAX_PERMANENT_ERRORS", "0"),
    ("LRO_NOT_FOUND_GRACE_S", "-1"),
    ("LRO_RETENTION_DAYS", "0"),
    ("LRO_RETENTION_DAYS", "nan"),
    ("LRO_POLL_BUDGET_S", "inf"),
    ("LRO_POLL_BUDGET_S", "nan"),
])
def test_bad_numbers_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        settings(**{name: value})


@pytest.mark.parametrize("name, value, attr, expected", [
    ("LRO_POLL_BUDGET_S", "25.5", "poll_budget_s", 25.5),
    ("LRO_POLL_BATCH", "500", "poll_batch", 500),
    ("LRO_MAX_PERMANENT_ERRORS", "3", "max_permanent_errors", 3),
    ("LRO_NOT_FOUND_GRACE_S", "0", "not_found_grace_s", 0.0),
    ("LRO_RETENTION_DAYS", "90", "retention_days", 90),
])
def test_good_numbers_are_accepted(name, value, attr, expected):
    assert getattr(settings(**{name: value}), attr) == expected


def test_uses_emulators_reflects_the_standard_switches(monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    assert settings().uses_emulators is False
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "localhost:8085")
    assert settings().uses_emulators is True


def test_every_variable_read_is_listed_for_terraform_or_local_use():
    names = {v for k, v in vars(config).items() if k.startswith("ENV_")}
    assert names <= set(config.COMMON_ENV) | set(config.POLL_ENV) | set(config.LOCAL_ONLY_ENV)


def test_allowed_parents_are_read_and_unset_means_any():
    assert settings().allowed_parents is None
    assert settings(LRO_ALLOWED_PARENTS="projects/my-project,projects/123").allowed_parents == (
        "projects/my-project", "projects/123")


def test_a_malformed_allowed_parent_is_a_config_error():
    with pytest.raises(ConfigError, match="LRO_ALLOWED_PARENTS"):
        settings(LRO_ALLOWED_PARENTS="my-project")


def test_start_up_warns_when_allowed_parents_is_unset():
    from functions import wiring

    # A handler on wiring's own logger: the root handler's stream is whichever stdout
    # the first logs.setup() of the session saw, so capturing stdout depends on test order.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    wiring.log.addHandler(handler)
    try:
        wiring.build(Settings(project="warn-unset-parents"))
        wiring.build(Settings(project="warn-set-parents", allowed_parents=("projects/warn-set-parents",)))
    finally:
        wiring.log.removeHandler(handler)
    warnings = [r for r in records if "LRO_ALLOWED_PARENTS" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "any project" in warnings[0].getMessage()
