"""docs/schemas/ against the messages a running lrowatch really emitted, and the
`lrowatch` CLI against the same local stack (functions as processes, emulators,
simulator). One stack per module; every wait is bounded."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.e2e.helpers import polling, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
DOCAI_TYPE = "type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def errors(validator: Draft202012Validator, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


# ----------------------------------------------------------------------------- the stack

pytestmark = pytest.mark.usefixtures("demo_file")  # the CLI tests use --local


def record(stack, operation_id: str) -> dict:
    return requests.get(f"{stack.urls['submit']}/operations/{operation_id}", timeout=10).json()


def pull_until(stack, subscription: str, done, timeout: float) -> list:
    """Pull (and ack) messages until done(messages so far) or the timeout."""
    messages: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(messages):
        messages += stack.topology.pull_all(subscription, timeout=1)
    return messages


# ----------------------------------------------------------------------------- what the system emitted

@pytest.fixture(scope="module")
def emitted(stack, sim):
    """Drive a realistic mix through the stack and collect every message it published:
    a Document AI batch with per-document failures (notify_topic), a Vision import
    that fails (submitted over Pub/Sub), and a Document AI batch cancelled mid-way."""
    topology, project = stack.topology, stack.project
    notify_topic = f"projects/{project}/topics/ocr-done"
    taps = {  # made BEFORE anything is submitted: a subscription sees only later messages
        "events": topology.create_pull_subscription(stack.settings.events_topic, "tap-events"),
        "commands": topology.create_pull_subscription(stack.settings.commands_topic, "tap-commands"),
        "notify": topology.create_pull_subscription(notify_topic, "tap-notify"),
    }
    ok_op = sim.create(kind="documentai", running_s=0.5, items=4, failed_items=1)
    failing_op = sim.create(kind="vision", running_s=0.5, outcome="failed")
    cancelled_op = sim.create(kind="documentai", running_s=120, cancel_delay_s=0.5)
    submissions = {
        "ok": {"url": ok_op["url"], "labels": {"team": "ocr"}, "correlation_id": "invoice-batch-42",
               "notify_topic": notify_topic, "policy": FAST},
        "failing": {"url": failing_op["url"], "policy": FAST},
        "cancelled": {"name": cancelled_op["name"], "service": "documentai", "policy": FAST},
    }
    ids = {}
    for key in ("ok", "cancelled"):
        answer = requests.post(stack.urls["submit"], json=submissions[key], timeout=10,
                               headers={"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"})
        assert answer.status_code == 201, answer.text
        ids[key] = answer.json()["id"]
    topology.publish(stack.settings.submissions_topic, submissions["failing"])
    ids["failing"] = wait_for(lambda: next((op["id"] for op in requests.get(
        f"{stack.urls['submit']}/operations", timeout=10).json()["operations"]
        if op["name"] == failing_op["name"]), None), 20, "the Pub/Sub submission to be recorded")
    cancel = requests.post(f"{stack.urls['submit']}/operations/{ids['cancelled']}:cancel",
                           json={"reason": "wrong processor"}, timeout=10)
    assert cancel.status_code == 202, cancel.text

    for _ in range(15):  # each run returns once nothing is due within its budget
        if all(record(stack, i)["done"] for i in ids.values()):
            break
        stack.poll(budget_s=2)
    states = {key: record(stack, i)["state"] for key, i in ids.items()}
    assert states == {"ok": "SUCCEEDED", "failing": "FAILED", "cancelled": "CANCELLED"}, stack.log_tails()

    def all_events(messages):
        seen = {(m.json()["type"], m.json()["operation"]["id"], m.json()["done"]) for m in messages}
        return {("lro.state_changed", i, True) for i in ids.values()} | {
            ("lro.cancel_outcome", ids["cancelled"], False)} <= seen

    return {
        "ids": ids,
        "submissions": submissions,
        "events": pull_until(stack, taps["events"], all_events, 20),
        "commands": pull_until(stack, taps["commands"], lambda m: len(m) >= 1, 10),
        "notifications": pull_until(stack, taps["notify"], lambda m: len(m) >= 1, 30),
    }


# ----------------------------------------------------------------------------- schemas

@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_each_schema_file_is_valid_json_schema_2020_12(path):
    document = json.loads(path.read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


def test_the_run_produced_every_kind_of_event_the_schemas_describe(emitted):
    events = [m.json() for m in emitted["events"]]
    by_op = {key: [e for e in events if e["operation"]["id"] == i] for key, i in emitted["ids"].items()}
    final = {key: max((e for e in evs if e["type"] == "lro.state_changed"), key=lambda e: e["sequence"])
             for key, evs in by_op.items()}
    assert final["ok"]["state"] == "SUCCEEDED"
    assert {k: final["ok"]["items"][k] for k in ("total", "failed")} == {"total": 4, "failed": 1}
    assert [i["status"]["code"] for i in final["ok"]["items"]["first_failed"]] == [3]
    assert final["failing"]["state"] == "FAILED" and final["failing"]["error"]["code"] != 0
    assert final["cancelled"]["state"] == "CANCELLED"
    assert [e["outcome"] for e in by_op["cancelled"] if e["type"] == "lro.cancel_outcome"] == ["sent"]


def test_every_event_published_matches_its_schema_with_filterable_attributes(emitted):
    validators = {"lro.state_changed": schema("event"), "lro.cancel_outcome": schema("cancel_outcome")}
    event_schema = json.loads((SCHEMAS / "event.schema.json").read_text())
    registry = Registry().with_resource(event_schema["$id"], Resource.from_contents(event_schema))
    attributes = Draft202012Validator({"$ref": f"{event_schema['$id']}#/$defs/attributes"}, registry=registry)
    for message in emitted["events"]:
        event = message.json()
        assert errors(validators[event["type"]], event) == [], event
        assert errors(attributes, message.attributes) == [], message.attributes
        assert message.ordering_key == event["operation"]["id"]
        assert message.attributes["event_id"] == event["event_id"]


def test_the_cancel_command_submit_published_matches_the_command_schema(emitted):
    [command] = [m.json() for m in emitted["commands"]]
    assert errors(schema("command"), command) == []
    assert command["id"] == emitted["ids"]["cancelled"] and command["reason"] == "wrong processor"


def test_the_notification_sent_to_notify_topic_matches_its_schema(stack, emitted):
    assert len(emitted["notifications"]) == 1, stack.log_tails(40)
    [notification] = [m.json() for m in emitted["notifications"]]
    assert errors(schema("notification"), notification) == []
    assert notification["correlation_id"] == "invoice-batch-42" and notification["state"] == "SUCCEEDED"
    assert notification["started_at"] <= notification["submitted_at"]  # the simulator's createTime, just before (ms)


def test_the_submissions_the_system_accepted_match_the_submission_schema(emitted):
    for submission in emitted["submissions"].values():
        assert errors(schema("submission"), submission) == []


@pytest.mark.parametrize("body", [
    {"name": "projects/1/locations/us/operations/x"},
    {"url": "https://us-documentai.googleapis.com/v1/projects/1/locations/us/operations/x", "service": "documentai"},
    {"name": "projects/1/operations/x", "service": "vision", "colour": "blue"},
    {"name": "projects/1/operations/x", "service": "vision", "labels": {"Team": "ocr"}},
    {"name": "projects/1/operations/x", "service": "vision", "policy": {"multiplier": 0.5}},
    {"name": "projects/1/operations/x", "service": "vision", "notify_url": "http://hooks.example.com/x"},
], ids=["no-service", "url-and-service", "unknown-field", "uppercase-label", "policy-range", "http-notify-url"])
def test_what_the_submission_schema_refuses_the_service_refuses_with_400(stack, body):
    assert errors(schema("submission"), body) != []
    assert requests.post(stack.urls["submit"], json=body, timeout=10).status_code == 400


# ----------------------------------------------------------------------------- structured logs

def test_every_function_logs_one_json_object_per_line_with_severity_and_component(stack, emitted):
    for name, process in stack.functions.items():
        lines = [line for line in process.log_text().splitlines()[1:] if line.strip()]  # [0] is the command
        entries = [json.loads(line) for line in lines]
        assert all(isinstance(e, dict) and e["severity"] and "message" in e for e in entries), name
        assert {e["logging.googleapis.com/labels"]["component"] for e in entries} <= {name}


def test_a_request_trace_header_reaches_that_requests_log_lines(stack, emitted):
    entries = [json.loads(line) for line in stack.functions["submit"].log_text().splitlines()[1:] if line.strip()]
    tracked = [e for e in entries if e["message"] == "operation tracked"
               and e.get("operation_id") == emitted["ids"]["ok"]]
    assert tracked and tracked[0]["logging.googleapis.com/trace"] == f"projects/{stack.project}/traces/{TRACE_ID}"


def test_each_poll_run_ends_with_one_summary_entry(stack, emitted):
    entries = [json.loads(line) for line in stack.functions["poll"].log_text().splitlines()[1:] if line.strip()]
    summaries = [e["summary"] for e in entries if e["message"] == "poll run finished"]
    assert summaries
    assert {"claimed", "polled", "changed", "published", "errors", "duration_s"} <= set(summaries[0])
    assert sum(s["changed"] for s in summaries) >= 3


# ----------------------------------------------------------------------------- the CLI

def test_cli_submits_by_name_and_service_and_a_second_submit_finds_the_same_record(sim, capsys):
    op = sim.create(kind="documentai", running_s=60)
    code, out, _ = run_cli(capsys, "submit", op["name"], "--service", "documentai", "--local",
                           "--label", "team=ocr", "--correlation-id", "cli-1")
    assert code == 0 and out.startswith("Tracking: ")
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["created"] is False
    assert answer["operation"]["labels"] == {"team": "ocr"} and answer["operation"]["url"] == op["url"]


def test_cli_submits_the_json_an_api_returned_inferring_service_and_regional_endpoint(sim, capsys, tmp_path,
                                                                                    monkeypatch):
    op = sim.create(kind="documentai", running_s=60)
    started = {"name": op["name"], "metadata": {"@type": DOCAI_TYPE, "state": "RUNNING"}}
    (tmp_path / "op.json").write_text(json.dumps(started))
    code, out, _ = run_cli(capsys, "submit", "--from-json", str(tmp_path / "op.json"), "--local", "--json")
    assert code == 0 and json.loads(out)["operation"]["url"] == op["url"]  # https://us-documentai…

    other = sim.create(kind="documentai", running_s=60)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({**started, "name": other["name"]})))
    code, out, _ = run_cli(capsys, "submit", "--from-json", "-", "--local", "--json")
    assert code == 0 and json.loads(out)["created"] is True


def test_cli_status_accepts_an_id_a_url_or_a_name_with_its_service(sim, capsys):
    op = sim.create(kind="vision", running_s=60)
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json")
    operation_id = json.loads(out)["operation"]["id"]
    for ref in ([operation_id], [op["url"]], [op["name"], "--service", "vision"]):
        code, out, _ = run_cli(capsys, "status", *ref, "--local", "--json")
        assert code == 0 and json.loads(out)["id"] == operation_id
    code, out, _ = run_cli(capsys, "status", operation_id, "--local")
    assert "PENDING" in out and op["name"] in out


def test_cli_lists_with_filters_and_follows_page_tokens(sim, capsys):
    run = f"r{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        op = sim.create(kind="vision", running_s=60)
        assert run_cli(capsys, "submit", op["url"], "--local", "--label", f"run={run}")[0] == 0
    code, out, _ = run_cli(capsys, "list", "--local", "--json", "--label", f"run={run}", "--limit", "2")
    page = json.loads(out)
    assert code == 0 and len(page["operations"]) == 2 and page["next_page_token"]
    code, out, _ = run_cli(capsys, "list", "--local", "--json", "--label", f"run={run}", "--limit", "2",
                           "--page-token", page["next_page_token"])
    assert len(json.loads(out)["operations"]) == 1
    code, out, _ = run_cli(capsys, "list", "--local", "--json", "--label", f"run={run}", "--limit", "1", "--all",
                           "--state", "pending", "--service", "vision")
    assert code == 0 and len(json.loads(out)["operations"]) == 3
    code, out, _ = run_cli(capsys, "list", "--local", "--label", f"run={run}")
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATE", "SERVICE", "PROGRESS", "UPDATED", "NAME"] and len(rows) == 3


def test_cli_cancel_then_watch_shows_the_outcome_and_the_states_until_done(stack, sim, capsys):
    op = sim.create(kind="documentai", running_s=120, cancel_delay_s=0.5)
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json", "--policy", json.dumps(FAST))
    operation_id = json.loads(out)["operation"]["id"]
    # The watch runs as its own process (python -m functions), as a person would run it.
    watcher = subprocess.Popen([sys.executable, "-m", "functions", "watch", operation_id, "--local", "--json",
                                "--timeout", "45"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=os.environ.copy())
    try:
        wait_for(lambda: _watch_subscriptions(stack), 20, "the watch's subscription")
        code, out, _ = run_cli(capsys, "cancel", operation_id, "--local", "--reason", "test")
        assert code == 0 and "Cancellation requested" in out
        with polling(stack):
            out, err = watcher.communicate(timeout=50)
    finally:
        watcher.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert watcher.returncode == 6, err  # it ended CANCELLED: wait's exit code
    assert [e["outcome"] for e in events if e["type"] == "lro.cancel_outcome"] == ["sent"]
    assert events[-1]["state"] == "CANCELLED" and events[-1]["done"] is True
    assert _watch_subscriptions(stack) == []  # the temporary subscription is gone


def _watch_subscriptions(stack) -> list[str]:
    names = stack.topology.publisher.list_topic_subscriptions(
        request={"topic": stack.topology.topic_path(stack.settings.events_topic)})
    return [n for n in names if "/lrowatch-watch-" in n]


def test_cli_watch_against_a_url_polls_the_record_until_done(stack, sim, capsys):
    op = sim.create(kind="vision", running_s=1)
    code, out, _ = run_cli(capsys, "submit", op["url"], "--url", stack.urls["submit"], "--json",
                           "--policy", json.dumps(FAST))
    operation_id = json.loads(out)["operation"]["id"]
    with polling(stack):
        code, out, err = run_cli(capsys, "watch", operation_id, "--url", stack.urls["submit"],
                                 "--interval", "0.2", "--timeout", "30")
    assert code == 0, err
    assert out.splitlines()[-1].split("  ")[3].endswith("→ SUCCEEDED")


def test_cli_watch_stops_at_its_timeout_while_the_operation_still_runs(sim, capsys):
    op = sim.create(kind="vision", running_s=600)
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json")
    operation_id = json.loads(out)["operation"]["id"]
    started = time.monotonic()
    code, out, err = run_cli(capsys, "watch", operation_id, "--local", "--timeout", "1.5")
    assert code == 8 and time.monotonic() - started < 15  # wait's "--timeout passed" code
    assert "stopped before the operation finished" in err


def test_a_document_ai_batch_with_failing_documents_ends_in_lrowatch_items(stack, sim, capsys):
    op = sim.create(kind="documentai", running_s=1, items=25, failed_items=7)
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json", "--policy", json.dumps(FAST))
    operation_id = json.loads(out)["operation"]["id"]
    with polling(stack):
        wait_for(lambda: record(stack, operation_id)["done"], 30, "the batch to finish")
    inputs = [f"gs://sim-input/{op['name'].rsplit('/', 1)[-1]}/doc-{n}.pdf" for n in range(7)]

    answer = requests.get(f"{stack.urls['submit']}/operations/{operation_id}/items",
                          params={"state": "failed", "page_size": 4}, timeout=10)
    assert answer.status_code == 200 and answer.json()["total_size"] == 7
    assert [i["input"] for i in answer.json()["items"]] == inputs[:4] and answer.json()["next_page_token"]

    code, out, err = run_cli(capsys, "items", operation_id, "--failed", "--local")
    assert code == 0 and out.splitlines() == inputs, err
    code, out, _ = run_cli(capsys, "items", operation_id, "--failed", "--local", "--csv")
    assert out.splitlines()[1].startswith(f"0,{inputs[0]},3,") and len(out.splitlines()) == 8
    code, out, _ = run_cli(capsys, "items", operation_id, "--local", "--json")
    assert [i["index"] for i in json.loads(out)["items"]] == list(range(7))
    code, out, _ = run_cli(capsys, "status", operation_id, "--local")
    assert "25 items, 7 failed" in out


def test_cli_status_shows_the_eta_of_a_progress_reporting_operation(stack, sim, capsys):
    op = sim.create(kind="generic", running_s=30)  # Speech-style progressPercent
    code, out, _ = run_cli(capsys, "submit", op["url"], "--local", "--json", "--policy", json.dumps(FAST))
    operation_id = json.loads(out)["operation"]["id"]
    with polling(stack):
        seen = wait_for(lambda: record(stack, operation_id).get("eta"), 30, "an ETA")
    assert seen
    code, out, _ = run_cli(capsys, "status", operation_id, "--local")
    eta_line = next(line for line in out.splitlines() if line.startswith("eta "))
    assert " left, " in eta_line or "any moment" in eta_line
    assert record(stack, operation_id)["eta_basis"] == "progress"


@pytest.mark.parametrize("argv, exit_code, says", [
    (["status", "0" * 32, "--local"], 4, "lrowatch list"),
    (["cancel", "f" * 32, "--local"], 4, "not tracked"),
    (["submit", "projects/1/operations/x", "--service", "nosuch", "--local"], 1, "publishes no long-running"),
    (["list", "--local", "--limit", "0"], 1, "limit"),
    (["submit", "projects/1/operations/x", "--local"], 2, "--service"),
    (["submit", "projects/1/operations/x", "--service", "vision", "--label", "team", "--local"], 2, "KEY=VALUE"),
    (["status", "not-an-id", "--local"], 2, "not an operation id"),
    (["status", "0" * 32, "--url", "http://127.0.0.1:9"], 3, "cannot reach"),
    (["status", "0" * 32, "--url", "http://example.com"], 2, "plain http"),
])
def test_cli_exit_codes_mean_something_and_errors_say_what_to_do(capsys, argv, exit_code, says):
    code, _, err = run_cli(capsys, *argv)
    assert code == exit_code, err
    assert says in err


def test_cli_json_errors_carry_googles_error_body(capsys):
    code, _, err = run_cli(capsys, "status", "0" * 32, "--local", "--json")
    assert code == 4 and '"status": "NOT_FOUND"' in err


def test_cli_without_a_target_asks_for_local_or_url(capsys, monkeypatch):
    monkeypatch.delenv("LROWATCH_URL", raising=False)
    code, _, err = run_cli(capsys, "list")
    assert code == 2 and "--local" in err and "--url" in err


def test_cli_dlq_replay_moves_a_dead_letter_back_to_its_topic_without_pubsubs_attributes(stack, capsys):
    topology, events_topic = stack.topology, stack.settings.events_topic
    dead_letters = "lro-events-handle-dlq"  # the local stack's pull subscription on the events' dead-letter topic
    check = topology.create_pull_subscription(events_topic, "tap-replayed")
    marker = uuid.uuid4().hex
    topology.publish(dead_letters, {"type": "lro.notification", "marker": marker},
                     CloudPubSubDeadLetterSourceDeliveryCount="10", origin="test")
    replay = ["dlq", "replay", "--local", "--subscription", dead_letters, "--topic", events_topic,
              "--limit", "1", "--json"]
    code, out, _ = run_cli(capsys, *replay, "--dry-run")
    assert code == 0 and json.loads(out)["pulled"] == 1 and json.loads(out)["republished"] == 0
    code, out, _ = run_cli(capsys, *replay)
    assert code == 0 and json.loads(out)["republished"] == 1
    [replayed] = pull_until(stack, check, lambda m: len(m) >= 1, 15)
    assert replayed.json()["marker"] == marker and replayed.attributes == {"origin": "test"}
