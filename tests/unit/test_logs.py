"""functions/logs.py: Cloud Logging's structured JSON, traces, and no secrets in any line."""
from __future__ import annotations

import io
import json
import logging

import pytest

from functions import logs
from functions.services.poll import RunSummary

PROJECT = "my-project"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def capture():
    """A logger whose output is one CloudLoggingFormatter stream; returns (logger, lines())."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.CloudLoggingFormatter("poll"))
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, lambda: stream.getvalue().splitlines()


def only_entry(lines) -> dict:
    [line] = lines()
    return json.loads(line)


def test_each_entry_is_one_line_of_json_in_cloud_loggings_shape(capture):
    logger, lines = capture
    logger.warning("line one\nline two", extra={"operation_id": "abc", "state": "RUNNING"})
    entry = only_entry(lines)
    assert entry["severity"] == "WARNING" and entry["message"] == "line one\nline two"
    assert entry["logging.googleapis.com/labels"] == {"component": "poll"}
    assert entry["operation_id"] == "abc" and entry["state"] == "RUNNING"
    assert entry["time"].startswith("20")


def test_an_exception_is_kept_in_the_same_entry(capture):
    logger, lines = capture
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    entry = only_entry(lines)
    assert entry["severity"] == "ERROR" and "ValueError: boom" in entry["exception"]


def test_fields_named_like_secrets_are_redacted(capture):
    logger, lines = capture
    logger.info("calling", extra={"id_token": "abc", "headers": {"Authorization": "Bearer x"}, "client_secret": 1})
    entry = only_entry(lines)
    assert entry["id_token"] == "[redacted]" and entry["client_secret"] == "[redacted]"
    assert entry["headers"] == {"Authorization": "[redacted]"}


@pytest.mark.parametrize("text", [
    "Authorization: Bearer ya29.a0AfH6SMBx-secret",
    "token eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJhdWQiOiJodHRwczovL3gifQ.c2lnbmF0dXJlLXNlY3JldA",
    "GET https://hooks.example.com/done?token=s3cr3t&x=1",
    "access ya29.c.secretvalue",
    'quoted "https://hooks.example.com/done?token=s3cr3t" in text',
])
def test_tokens_inside_messages_and_exceptions_never_reach_the_log(capture, text):
    logger, lines = capture
    logger.error("request failed: %s", text, extra={"detail": [text]})
    try:
        raise RuntimeError(text)
    except RuntimeError:
        logger.exception("again")
    output = "\n".join(lines())
    for secret in ("secret", "s3cr3t", "eyJhdWQi"):
        assert secret not in output
    assert all(json.loads(line) for line in lines())  # redaction keeps each line valid JSON


def test_the_request_trace_is_attached_while_serving_and_removed_after(capture):
    logger, lines = capture
    with logs.traced({"X-Cloud-Trace-Context": f"{TRACE}/123;o=1"}, PROJECT) as trace:
        logger.info("inside")
    logger.info("outside")
    inside, outside = (json.loads(line) for line in lines())
    assert trace == inside["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert "logging.googleapis.com/trace" not in outside


@pytest.mark.parametrize("header, expected", [
    (f"{TRACE}/1;o=1", TRACE),
    (f"{TRACE}", TRACE),
    (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
    (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", TRACE),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
    ("not-hex/1", None),
    ("a" * 33 + "/1", None),
    ("", None),
    (None, None),
    ("../../projects/other/traces/x", None),
])
def test_trace_headers_are_parsed_strictly(header, expected):
    trace = logs.trace_from_header(header, PROJECT)
    assert trace == (f"projects/{PROJECT}/traces/{expected}" if expected else None)


def test_traceparent_is_preferred_over_googles_own_header():
    headers = {"traceparent": f"00-{'1' * 32}-00f067aa0ba902b7-01", "X-Cloud-Trace-Context": f"{'2' * 32}/1"}
    assert logs.trace_of(headers, PROJECT) == f"projects/{PROJECT}/traces/{'1' * 32}"


def test_setup_is_idempotent_and_labels_entries_with_the_function_served(monkeypatch, capsys):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setenv("FUNCTION_TARGET", "handle")
    try:
        root.handlers[:] = []
        logs.setup("INFO")
        logs.setup("INFO")
        assert len(root.handlers) == 1
        logging.getLogger("functions.test").info("hello")
        entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert entry["logging.googleapis.com/labels"] == {"component": "handle"}
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level


def test_the_poll_summary_names_every_count_an_operator_reads():
    summary = RunSummary(run_id="r1").to_json()
    assert {"claimed", "polled", "changed", "published", "errors", "duration_s"} <= set(summary)


def test_entries_carry_the_span_and_the_sampling_decision_beside_the_trace(capture):
    logger, lines = capture
    with logs.traced({"X-Cloud-Trace-Context": f"{TRACE}/123;o=1"}, PROJECT):
        logger.info("google header")
    with logs.traced({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"}, PROJECT):
        logger.info("w3c header")
    google, w3c = (json.loads(line) for line in lines())
    assert google["logging.googleapis.com/spanId"] == format(123, "016x")
    assert google["logging.googleapis.com/trace_sampled"] is True
    assert w3c["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert w3c["logging.googleapis.com/trace_sampled"] is False


def test_messages_published_while_traced_carry_the_trace_on_and_none_otherwise():
    assert logs.outgoing_traceparent() is None
    with logs.traced({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, PROJECT):
        assert logs.outgoing_traceparent() == f"00-{TRACE}-00f067aa0ba902b7-01"
    with logs.traced({"X-Cloud-Trace-Context": TRACE}, PROJECT):  # no span: a fresh one, same trace
        version, trace, span, flags = logs.outgoing_traceparent().split("-")
        assert (version, trace, flags) == ("00", TRACE, "00") and len(span) == 16
