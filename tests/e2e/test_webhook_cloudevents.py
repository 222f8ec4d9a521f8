"""notify_url deliveries are CloudEvents 1.0 in HTTP binary mode: a standard
functions-framework `@cloud_event` receiver (a real process) accepts them, and
so does the `cloudevents` SDK's parser.

The receiver sits behind an https front on 127.0.0.1 (notify_url must be
https); the front passes each request through unchanged and keeps a copy, and
lrowatch records the receiver's own answer as delivered or not.
"""
from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from cloudevents.http import from_http

from functions.local.processes import function_process
from functions.local.stack import LocalStack
from functions.simulator.client import SimulatorAdmin
from tests.e2e.helpers import polling, serve_https, wait_for

RECEIVER = '''
import json, os
import functions_framework

@functions_framework.cloud_event
def receive(cloud_event):
    with open(os.environ["RECEIVED"], "a") as out:
        out.write(json.dumps({"attributes": dict(cloud_event.get_attributes()), "data": cloud_event.data},
                             default=str) + "\\n")
'''


class Front:
    """https on 127.0.0.1, passing POSTs through to `upstream` and keeping what came in."""

    def __init__(self, directory: Path, upstream: str):
        self.requests: list[dict] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                front.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.post(upstream + self.path, data=body, headers=headers, timeout=10)
                self.send_response(answer.status_code)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *_):
                pass

        self.server, origin, self.cert = serve_https(Handler, directory, "lrowatch test receiver")
        self.url = origin + "/"

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def world(emulators, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cloudevents")
    (directory / "receiver.py").write_text(RECEIVER)
    received = directory / "received.jsonl"
    receiver = function_process("receive", source=directory / "receiver.py", env={"RECEIVED": str(received)},
                                run_dir=directory / "logs")
    with receiver:
        front = Front(directory, f"http://127.0.0.1:{receiver.port}")
        stack = LocalStack(f"ce-{int(time.time())}", emulator_env=emulators.env(), run_dir=directory / "logs",
                           extra_env={"LRO_NOTIFY_URL_PREFIXES": front.url, "LRO_NOTIFY_CA_BUNDLE": str(front.cert)})
        with stack:
            yield stack, front, received
        front.close()


def test_a_finished_operations_webhook_is_a_cloudevent_that_receivers_accept(world):
    stack, front, received = world
    sim = SimulatorAdmin(stack.urls["simulator"])
    op = sim.create(kind="documentai", running_s=0.5)
    answer = requests.post(stack.urls["submit"], timeout=30, json={
        "url": op["url"], "notify_url": front.url + "lro/done",
        "policy": {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}})
    assert answer.status_code == 201, answer.text
    operation_id = answer.json()["id"]

    def completed():
        record = requests.get(f"{stack.urls['submit']}/operations/{operation_id}", timeout=10).json()
        return record if (record.get("completion") or {}).get("notify_url") else None

    with polling(stack):
        record = wait_for(completed, 60, "the webhook's outcome on the record")
    assert record["completion"]["notify_url"]["delivered"] is True, (record["completion"], stack.log_tails())
    assert record["completion"]["notify_url"]["status"] == 200

    # What functions-framework's @cloud_event function was handed.
    [got] = [json.loads(line) for line in received.read_text().splitlines()]
    attributes, data = got["attributes"], got["data"]
    assert attributes["specversion"] == "1.0" and attributes["id"] == data["event_id"]
    assert attributes["type"] == "lro.notification" and attributes["subject"] == op["name"]
    assert attributes["source"] == f"//lrowatch/projects/{stack.project}/collections/{stack.settings.collection}"
    assert data["operation"]["id"] == operation_id and data["state"] == "SUCCEEDED"

    # The same request, through the cloudevents SDK's own parser.
    [request] = front.requests
    event = from_http(request["headers"], request["body"])
    assert event["id"] == data["event_id"] and event["subject"] == op["name"]
    assert event["time"] == data["completed_at"] and event.data == data
    assert request["headers"]["Content-Type"] == "application/json"
