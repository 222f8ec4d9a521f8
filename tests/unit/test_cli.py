"""The CLI's pure parts: inferring services, ids, arguments, targets, error mapping. No I/O."""
from __future__ import annotations

import json
import re

import pytest

from functions.cli import api, build_parser, refs, render, target
from functions.cli.errors import ApiError, NotFoundError, Unreachable, UsageError
from functions.domain.names import build_ref

DOCAI_NAME = "projects/123/locations/eu/operations/bc4e1d412863e626"


@pytest.mark.parametrize("type_url, expected", [
    ("type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata", ("documentai", "v1")),
    ("type.googleapis.com/google.cloud.vision.v1p4beta1.OperationMetadata", ("vision", None)),  # no v1p4beta1 ops
    ("type.googleapis.com/google.firestore.admin.v1.ExportDocumentsMetadata", ("firestore", "v1")),
    ("type.googleapis.com/google.cloud.translation.v3.BatchTranslateMetadata", ("translation", "v3")),
    ("type.googleapis.com/google.cloud.unknownthing.v1.Metadata", (None, None)),
    ("type.googleapis.com/google.protobuf.Empty", (None, None)),
])
def test_the_service_is_inferred_from_the_metadata_type_package(type_url, expected):
    assert refs.service_of_type(type_url) == expected


def test_an_api_answer_becomes_a_submission_whose_endpoint_follows_from_the_name():
    answer = {"name": DOCAI_NAME, "metadata": {
        "@type": "type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata", "state": "RUNNING"}}
    submission = refs.from_operation_json(json.dumps(answer))
    assert submission == {"name": DOCAI_NAME, "service": "documentai", "api_version": "v1"}
    assert build_ref(submission["name"], submission["service"]).endpoint == "eu-documentai.googleapis.com"


@pytest.mark.parametrize("text", ["not json", "[]", '{"metadata": {}}', '{"name": 7}'])
def test_an_api_answer_without_a_name_is_a_usage_error(text):
    with pytest.raises(UsageError):
        refs.from_operation_json(text)


def test_an_operation_is_named_by_id_url_or_name_with_service_and_all_give_the_same_id():
    ref = build_ref(DOCAI_NAME, "documentai")
    assert refs.operation_id(ref.id) == ref.id
    assert refs.operation_id(ref.url) == ref.id
    assert refs.operation_id(DOCAI_NAME, "documentai.googleapis.com") == ref.id


@pytest.mark.parametrize("value, service", [
    (DOCAI_NAME, None), ("https://evil.example.com/v1/" + DOCAI_NAME, None), ("x/y", "vision"),
])
def test_an_unusable_operation_reference_is_a_usage_error(value, service):
    with pytest.raises(UsageError):
        refs.operation_id(value, service)


def test_labels_and_policy_arguments_are_parsed_or_refused():
    assert refs.labels(["team=ocr", "env="]) == {"team": "ocr", "env": ""}
    assert refs.policy('{"initial_delay_s": 0}') == {"initial_delay_s": 0}
    for bad in (lambda: refs.labels(["team"]), lambda: refs.policy("{"), lambda: refs.policy("[1]")):
        with pytest.raises(UsageError):
            bad()


def test_the_target_comes_from_url_then_local_then_the_environment(monkeypatch, tmp_path):
    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps({"submit": "http://127.0.0.1:8080", "project": "p"}))
    monkeypatch.setenv(target.ENV_DEMO_FILE, str(demo))
    monkeypatch.setenv(target.ENV_URL, "https://env.example.run.app/")
    assert target.resolve("https://lro-submit-abc.a.run.app/", False).submit_url == "https://lro-submit-abc.a.run.app"
    local = target.resolve(None, True)
    assert local.local and local.submit_url == "http://127.0.0.1:8080" and not local.needs_token
    deployed = target.resolve(None, False)
    assert deployed.needs_token and deployed.audience == "https://env.example.run.app"


def test_without_a_running_demo_local_says_to_start_it(monkeypatch, tmp_path):
    monkeypatch.setenv(target.ENV_DEMO_FILE, str(tmp_path / "missing.json"))
    with pytest.raises(Unreachable, match="not running") as raised:
        target.resolve(None, True)
    assert "make demo" in raised.value.hint


@pytest.mark.parametrize("url", ["http://lro.example.com", "ftp://x", "https://x/?token=1", "nothing"])
def test_a_url_that_could_leak_a_token_is_refused(url):
    with pytest.raises(UsageError):
        target.resolve(url, False)


def test_an_id_token_is_fetched_for_the_functions_audience_and_sent_as_bearer(monkeypatch):
    seen = {}

    class Session:
        trust_env = True

        def request(self, method, url, headers, **kwargs):
            seen.update(url=url, headers=headers)
            return Response(200, {"operations": []})

    monkeypatch.setattr(target, "id_token", lambda audience: f"token-for-{audience}")
    client = api.Client(target.Target("https://lro-submit-abc.a.run.app"), session=Session())
    client.list({})
    assert seen["headers"]["Authorization"] == "Bearer token-for-https://lro-submit-abc.a.run.app"
    assert seen["url"] == "https://lro-submit-abc.a.run.app/operations"


class Response:
    def __init__(self, status, body, reason="Reason"):
        self.status_code, self._body, self.reason = status, body, reason

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


@pytest.mark.parametrize("status, error_type, code", [
    (400, ApiError, 1), (409, ApiError, 1), (404, NotFoundError, 4),
    (401, Unreachable, 3), (403, Unreachable, 3), (429, Unreachable, 3), (503, Unreachable, 3),
])
def test_http_statuses_map_to_exit_codes(status, error_type, code):
    error = api._error(Response(status, {"error": {"code": status, "status": "X", "message": "why"}}))
    assert isinstance(error, error_type) and error.exit_code == code and "why" in error.message


def test_a_non_json_error_body_still_gives_a_readable_message():
    assert api._error(Response(502, None, "Bad Gateway")).message == "HTTP 502 Bad Gateway"


def test_a_table_aligns_columns_and_shows_missing_values_as_dashes(capsys):
    render.table([{"a": "x", "b": None}, {"a": "longer", "b": 2}], [("A", "a"), ("B", "b")])
    assert capsys.readouterr().out.splitlines() == ["A       B", "x       -", "longer  2"]


def test_an_event_line_says_what_changed():
    event = {"type": "lro.state_changed", "sequence": 2, "operation": {"id": "a" * 32}, "previous_state": "RUNNING",
             "state": "SUCCEEDED", "provider_state": "SUCCEEDED", "progress_percent": 100,
             "items": {"total": 3, "failed": 1}, "observed_at": "2024-05-01T12:00:00.000Z"}
    line = render.event_line(event)
    assert "#2" in line and "RUNNING → SUCCEEDED" in line and "3 items, 1 failed" in line


# --- text an API sent, on a terminal ------------------------------------------------------

# What a terminal would act on: a colour, a title change ended by BEL, a C1 CSI, backspace,
# DEL, a bidi override and a line separator.
HOSTILE = "a\x1b[31mb\x1b]0;owned\x07c\x9b2Jd\x08\x7f\u202eevil.pdf\u2028x"
SHOWN = "a\\x1b[31mb\\x1b]0;owned\\x07c\\x9b2Jd\\x08\\x7f\\u202eevil.pdf\\u2028x"
UNSEEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.parametrize("text, shown", [
    (HOSTILE, SHOWN),
    ("line\nnext\ttab\rback", "line\\nnext\\ttab\\rback"),
    ("\u2066\u2069\u200e\u200f\u061c", "\\u2066\\u2069\\u200e\\u200f\\u061c"),
])
def test_characters_a_terminal_would_act_on_are_written_out(text, shown):
    assert render.visible(text) == shown


@pytest.mark.parametrize("text", ["gs://in/résumé 文件 (1).pdf", "C:\\x1b is text", "👩\u200d💻 ok", "tab-less"])
def test_printable_text_is_shown_as_it_is(text):
    assert render.visible(text) == text


def test_status_shows_an_apis_control_characters_escaped(capsys):
    record = {"id": "a" * 32, "name": f"operations/{HOSTILE}", "state": "FAILED", "provider_state": HOSTILE,
              "error": {"code": 3, "status": "INVALID_ARGUMENT", "message": HOSTILE}, "labels": {"k": HOSTILE}}
    render.record(record)
    out = capsys.readouterr().out
    assert not UNSEEN.search(out.replace("\n", ""))
    assert f"3 INVALID_ARGUMENT: {SHOWN}" in out and f"(provider: {SHOWN})" in out and f"k={SHOWN}" in out


def test_a_table_escapes_control_characters_and_aligns_what_it_shows(capsys):
    render.table([{"a": "\x1b[2J", "b": 1}, {"a": "plain", "b": 2}], [("A", "a"), ("B", "b")])
    assert capsys.readouterr().out.splitlines() == ["A        B", "\\x1b[2J  1", "plain    2"]


def test_an_event_line_escapes_an_apis_error_message():
    event = {"type": "lro.state_changed", "sequence": 3, "operation": {"id": "a" * 32}, "previous_state": "RUNNING",
             "state": "FAILED", "error": {"code": 13, "message": HOSTILE}, "observed_at": "2024-05-01T12:00:00Z"}
    line = render.event_line(event)
    assert not UNSEEN.search(line) and line.endswith(f"(13: {SHOWN})")


def test_json_output_keeps_an_apis_text_exact(capsys):
    record = {"id": "a" * 32, "state": "FAILED", "error": {"code": 3, "message": HOSTILE}}

    class Client:
        def get(self, operation_id):
            return record

    args = build_parser().parse_args(["status", "a" * 32, "--json"])
    assert args.run(args, Client()) == 0
    assert json.loads(capsys.readouterr().out) == record


@pytest.mark.parametrize("argv", [
    ["status", "ID", "--local", "--json"], ["list", "--state", "running", "--all", "--url", "https://x"],
    ["watch", "--local", "--timeout", "5"], ["dlq", "replay", "--subscription", "s", "--topic", "t", "--dry-run", "--project", "p"],
])
def test_options_may_follow_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert callable(args.run)


def test_a_bad_state_is_a_usage_error_with_exit_code_2():
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(["list", "--state", "DONE"])
    assert raised.value.code == 2


def test_services_lists_every_catalog_api_offline(capsys):
    from functions.cli import main
    from functions.domain.catalog import load

    assert main(["services"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(load().apis)} APIs, {load().form_count} operation name forms")
    assert "\n  vision " in out and "\n  dataproc " in out


def test_services_for_one_api_shows_its_patterns_endpoints_and_capabilities(capsys):
    from functions.cli import main

    assert main(["services", "documentai"]) == 0
    out = capsys.readouterr().out
    assert "projects/{P}/locations/{L}/operations/{ID}  (cancel, list)" in out
    assert "LOCATION-documentai.googleapis.com for any location" in out
    assert "documentai.eu.rep.googleapis.com" in out


def test_services_with_an_unknown_api_is_a_usage_error(capsys):
    from functions.cli import main

    assert main(["services", "evil.com"]) == 2
    assert "publishes no long-running operations" in capsys.readouterr().err


def test_an_error_message_quoting_the_servers_answer_writes_its_control_characters_out(capsys, monkeypatch):
    from functions.cli import commands, main

    def refused(args, client):
        raise api._error(Response(400, {"error": {"code": 400, "status": "X", "message": "bad\x1b[2J\u202e"}}))

    monkeypatch.setattr(commands, "status", refused)
    assert main(["status", "0" * 32, "--url", "https://lrowatch.example"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err and "bad\\x1b[2J\\u202e" in err
