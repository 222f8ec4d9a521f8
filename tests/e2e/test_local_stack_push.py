"""LocalStack with a throwaway source: Pub/Sub pushes reach the function processes,
poll answers, and nothing is left running afterwards."""
from __future__ import annotations

import base64
import json
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from functions.local.stack import LocalStack

# Stands in for main.py: records what the CloudEvent functions receive.
RECORDING_SOURCE = textwrap.dedent('''
    import json, os
    import functions_framework

    def _record(target, event):
        line = json.dumps({"type": event["type"], "data": event.data})
        with open(os.path.join(os.environ["RECORD_DIR"], target + ".jsonl"), "a") as f:
            f.write(line + "\\n")

    @functions_framework.http
    def submit(request):
        return {"received": request.get_json(silent=True)}, 201

    @functions_framework.http
    def poll(request):
        body = request.get_json(silent=True) or {}
        return {"budget_s": body.get("budget_s"), "project": os.environ["GOOGLE_CLOUD_PROJECT"]}

    @functions_framework.cloud_event
    def handle(event):
        _record("handle", event)

    @functions_framework.cloud_event
    def submit_pubsub(event):
        _record("submit_pubsub", event)
''')


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "main.py"
    path.write_text(RECORDING_SOURCE)
    return path


def _received(record_dir: Path, target: str, count: int, timeout: float = 30.0) -> list[dict]:
    path = record_dir / f"{target}.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.2)
    raise AssertionError(f"{target} received fewer than {count} pushes in {timeout}s")


def _payload(pushed: dict) -> dict:
    return json.loads(base64.b64decode(pushed["data"]["message"]["data"]))


def test_messages_on_each_topic_are_pushed_to_their_function(emulators, project_id, source, tmp_path):
    with LocalStack(project_id, emulator_env=emulators.env(), start_simulator=False, source=source,
                    extra_env={"RECORD_DIR": str(tmp_path)}, run_dir=tmp_path / "logs") as stack:
        settings = stack.settings
        stack.topology.publish(settings.events_topic, {"type": "lro.state_changed", "sequence": 1},
                               ordering_key="op-1", state="RUNNING")
        stack.topology.publish(settings.commands_topic, {"type": "cancel", "id": "op-1"})
        stack.topology.publish(settings.submissions_topic, {"name": "projects/p/operations/o", "service": "vision"})

        handled = _received(tmp_path, "handle", 2)
        submitted = _received(tmp_path, "submit_pubsub", 1)
        summary = stack.poll(budget_s=3)

    assert sorted(_payload(p)["type"] for p in handled) == ["cancel", "lro.state_changed"]
    assert all(p["type"] == "google.cloud.pubsub.topic.v1.messagePublished" for p in handled)
    event = next(p for p in handled if _payload(p)["type"] == "lro.state_changed")
    assert event["data"]["message"]["attributes"] == {"state": "RUNNING"}
    assert _payload(submitted[0]) == {"name": "projects/p/operations/o", "service": "vision"}
    assert summary == {"budget_s": 3, "project": project_id}
    assert set(stack.urls) == {"submit", "submit_pubsub", "poll", "handle"}


def test_the_stack_leaves_no_process_behind(source, tmp_path):
    with LocalStack(start_simulator=False, source=source, extra_env={"RECORD_DIR": str(tmp_path)},
                    run_dir=tmp_path / "logs") as stack:
        started = [psutil.Process(p.pid) for p in stack.processes]
        started += [child for process in list(started) for child in process.children(recursive=True)]
        assert len(stack.processes) == 6  # two emulators, four functions

    # Orphaned grandchildren are reaped by init asynchronously: allow a moment, ignore zombies.
    _, alive = psutil.wait_procs(started, timeout=5)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
