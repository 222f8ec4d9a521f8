"""`handle` as a process behind Pub/Sub push: duplicates, reordering, poison, outages,
dead letters and notifications, against the real emulators and the simulator.

One LocalStack serves the module; each test works on its own operations.
"""
from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from functions.dlq import replay
from functions.local.processes import REPO_ROOT, function_process, free_port
from functions.local.stack import LocalStack, post_json
from functions.simulator.client import SimulatorAdmin
from tests.e2e.helpers import serve_https

NOTIFY_TOPIC = "ocr-done"


# --- local stand-ins: an https webhook receiver, a TCP link that can be cut ------

class Webhook:
    """An https receiver on 127.0.0.1 that records every POST."""

    def __init__(self, directory: Path):
        self.posts: list[dict] = []
        self.unavailable = 0  # answer this many more POSTs with 503
        received, webhook = self.posts, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                failing, webhook.unavailable = webhook.unavailable > 0, max(0, webhook.unavailable - 1)
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server, origin, self.cert = serve_https(Handler, directory, "lrowatch test webhook")
        self.url = origin + "/"

    def posts_for(self, operation_id: str) -> list[dict]:
        return [p for p in self.posts if p["body"]["operation"]["id"] == operation_id]

    def close(self):
        self.server.shutdown()


class Link:
    """A TCP forwarder to `target` that can be cut (connections refused) and restored."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = free_port()
        self._listener: socket.socket | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener:
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass


# --- the module's stack ---------------------------------------------------------

class World:
    def __init__(self, stack: LocalStack, webhook: Webhook):
        self.stack, self.webhook = stack, webhook
        self.sim = SimulatorAdmin(stack.urls["simulator"])
        self.topology = stack.topology
        self.settings = stack.settings
        self.notify_topic = self.topology.create_topic(NOTIFY_TOPIC)
        self.topology.create_pull_subscription(NOTIFY_TOPIC, "notify-tap")
        self.topology.create_pull_subscription(self.settings.events_topic, "events-tap", ordering=True)
        self._notes: list[dict] = []
        self._events: list[dict] = []

    # submit / read ---------------------------------------------------------
    def track(self, op: dict, **extra) -> str:
        body = {"url": op["url"], "policy": {"initial_delay_s": 0, **extra.pop("policy", {})}, **extra}
        return post_json(self.stack.urls["submit"], body)["id"]

    def record(self, op_id: str) -> dict:
        with urllib.request.urlopen(f"{self.stack.urls['submit']}/operations/{op_id}", timeout=10) as response:
            return json.loads(response.read())

    def cancel(self, op_id: str) -> None:
        post_json(f"{self.stack.urls['submit']}/operations/{op_id}:cancel", {"reason": "test"})

    def poll_until(self, op_id: str, done, timeout: float = 30.0) -> dict:
        """Poll runs (as Cloud Scheduler would trigger them) until done(record)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.stack.poll(budget_s=3)  # ends early when nothing falls due within it
            record = self.record(op_id)
            if done(record):
                return record
            time.sleep(0.5)
        raise AssertionError(f"{op_id} never got there: {record}")

    # observe -------------------------------------------------------------------
    def claim_keys(self) -> list[str]:
        return [d.id for d in self._firestore().collection(self.settings.claims_collection).list_documents()]

    def record_ids(self) -> list[str]:
        return [d.id for d in self._firestore().collection(self.settings.collection).list_documents()]

    def _firestore(self):
        from google.cloud import firestore

        return firestore.Client(project=self.settings.project)

    def notes_for(self, op_id: str, settle_s: float = 2.0) -> list[dict]:
        self._notes += [m.json() for m in self.topology.pull_all("notify-tap", timeout=settle_s)]
        return [n for n in self._notes if n["operation"]["id"] == op_id]

    def events_for(self, op_id: str, settle_s: float = 2.0) -> list[dict]:
        self._events += [m.json() for m in self.topology.pull_all("events-tap", timeout=settle_s)]
        return [e for e in self._events if e["operation"]["id"] == op_id]

    def handle_log(self, process=None) -> list[dict]:
        entries = []
        for line in (process or self.stack.functions["handle"]).log_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return [e for e in entries if isinstance(e, dict)]

    def outcomes(self, message_ids: set[str], process=None) -> list[tuple[str, str]]:
        """(message id, what handle did) for each delivery of these messages so far."""
        found = []
        for entry in self.handle_log(process):
            if entry.get("message_id") in message_ids:
                found.append((entry["message_id"], entry.get("outcome") or entry.get("reason")))
        return found

    def wait(self, what, until=bool, timeout: float = 30.0, every: float = 0.3):
        """what() once until(what()) holds; its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if until(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; handle log tail:\n"
                                     f"{self.stack.functions['handle'].log_tail(30)}")
            time.sleep(every)

    @contextmanager
    def events_push_paused(self):
        """Events pile up on the events subscription instead of reaching handle."""
        subscriber, path = self.topology.subscriber, self.stack.subscriptions["events"]
        subscriber.modify_push_config(request={"subscription": path, "push_config": {}})
        try:
            yield path
        finally:
            subscriber.modify_push_config(request={"subscription": path, "push_config": {
                "push_endpoint": self.stack.urls["handle"].rstrip("/") + "/"}})


@pytest.fixture(scope="module")
def world(emulators, tmp_path_factory):
    directory = tmp_path_factory.mktemp("handle-e2e")
    webhook = Webhook(directory)
    stack = LocalStack(f"e2e-{int(time.time())}", emulator_env=emulators.env(), run_dir=directory / "logs",
                       extra_env={"LRO_NOTIFY_URL_PREFIXES": webhook.url, "LRO_NOTIFY_CA_BUNDLE": str(webhook.cert)})
    with stack:
        yield World(stack, webhook)
    webhook.close()


def _publish_copy(world: World, topic: str, event: dict, key: str) -> str:
    return world.topology.publish(topic, event, ordering_key=key, type=event["type"],
                                  event_id=event["event_id"], operation_id=key, state=event["state"])


# --- duplicates and order ----------------------------------------------------------

def test_a_terminal_event_delivered_five_times_and_events_in_reverse_order_complete_once(world):
    # It runs until the simulator's clock is moved on: seen RUNNING first however slow the machine.
    op = world.sim.create(kind="documentai", running_s=3600, outcome="succeeded", items=3, failed_items=1)
    with world.events_push_paused() as subscription:
        op_id = world.track(op, notify_topic=world.notify_topic, notify_url=world.webhook.url + "lro/done")
        world.poll_until(op_id, lambda r: r["state"] == "RUNNING")
        world.sim.advance(3600)
        record = world.poll_until(op_id, lambda r: r["state"] == "SUCCEEDED")
        # Take the operation's events off the paused subscription; handle has seen none of them.
        original = [m for m in world.topology.pull_all(subscription, timeout=3, expect=record["sequence"])
                    if m.ordering_key == op_id]
    events = sorted((m.json() for m in original), key=lambda e: e["sequence"])
    assert [e["state"] for e in events][-1] == "SUCCEEDED" and len(events) == record["sequence"] >= 2

    # Newest first, the terminal one five times over: handle must cope with both.
    deliveries = [events[-1]] * 5 + list(reversed(events[:-1]))
    ids = {_publish_copy(world, world.settings.events_topic, e, op_id) for e in deliveries}
    outcomes = world.wait(lambda: world.outcomes(ids), lambda o: len(o) >= len(deliveries))

    assert sorted(o for _, o in outcomes) == sorted(["completed"] + ["duplicate"] * 4
                                                    + ["ignored"] * (len(events) - 1))
    final = world.record(op_id)
    assert (final["state"], final["sequence"]) == ("SUCCEEDED", record["sequence"])  # never backwards
    assert final["completion"]["event_id"] == events[-1]["event_id"]
    assert final["items"] == {"total": 3, "failed": 1} and final["response"] and final["completed_at"]
    assert final["completion"]["duration_s"] > 0
    notes = world.notes_for(op_id)
    assert [n["state"] for n in notes] == ["SUCCEEDED"]
    posts = world.webhook.posts_for(op_id)
    assert len(posts) == 1 and posts[0]["path"] == "/lro/done"
    assert "Authorization" not in posts[0]["headers"]  # local mode: no ID token
    assert final["completion"]["notify_url"]["delivered"] is True
    assert final["completion"]["notify_topic"]["message_id"]


# --- errors -----------------------------------------------------------------------

def test_a_webhook_down_for_a_while_gets_the_notification_once_it_is_back(world):
    op = world.sim.create(kind="vision", running_s=0)
    world.webhook.unavailable = 6  # two deliveries of three attempts each
    op_id = world.track(op, notify_url=world.webhook.url + "down-for-a-while")
    world.poll_until(op_id, lambda r: r["done"])
    record = world.wait(lambda: world.record(op_id), lambda r: r.get("completion"), timeout=90)
    assert record["completion"]["notify_url"] == {"attempts": 1, "status": 204, "error": None, "delivered": True}
    statuses = [p for p in world.webhook.posts_for(op_id)]
    assert len(statuses) == 7  # 3 + 3 answered 503 (handle answered 5xx, Pub/Sub redelivered), then 204
    assert len({p["headers"]["ce-id"] for p in statuses}) == 1  # the same notification every time
    unavailable = [e for e in world.handle_log() if e.get("reason") == "NotifyUnavailable"]
    assert len(unavailable) == 2 and all(e["severity"] == "WARNING" for e in unavailable)


def test_failed_expired_and_timed_out_each_notify_once_and_log_one_error_with_the_full_status(world):
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA", "domain": "x"}]
    failed = world.sim.create(kind="vision", running_s=0, outcome="failed",
                              error={"code": 8, "message": "quota exhausted", "details": details})
    expiring = world.sim.create(kind="documentai", running_s=60)
    slow = world.sim.create(kind="generic", running_s=60)
    labels = {"team": "ocr"}
    ids = {
        "FAILED": world.track(failed, notify_topic=world.notify_topic, labels=labels),
        "EXPIRED": world.track(expiring, notify_topic=world.notify_topic, labels=labels),
        "TIMED_OUT": world.track(slow, notify_topic=world.notify_topic, labels=labels,
                                 policy={"deadline_s": 1}),
    }
    world.stack.poll(budget_s=3)
    world.sim.expire(expiring["name"], host=expiring["host"])
    for state, op_id in ids.items():
        world.poll_until(op_id, lambda r, s=state: r["state"] == s)
    for state, op_id in ids.items():
        world.wait(lambda i=op_id: world.record(i)["completion"])
        assert [n["state"] for n in world.notes_for(op_id)] == [state]

    assert world.record(ids["FAILED"])["error"] == {"code": 8, "message": "quota exhausted", "details": details}
    assert world.record(ids["EXPIRED"])["error"]["code"] == 5
    assert world.record(ids["TIMED_OUT"])["error"]["code"] == 4
    errors = [e for e in world.handle_log() if e.get("event") == "lro.terminal" and e["severity"] == "ERROR"
              and e["operation_id"] in ids.values()]
    assert sorted(e["state"] for e in errors) == ["EXPIRED", "FAILED", "TIMED_OUT"]
    for entry in errors:
        assert entry["labels"] == labels and entry["service"] and entry["operation"]
        assert entry["error"]["code"] in (4, 5, 8)


# --- cancellation -------------------------------------------------------------------

def test_two_cancel_commands_at_once_and_more_repeats_reach_the_api_exactly_once(world):
    op = world.sim.create(kind="documentai", running_s=60, cancel_delay_s=0.5)
    op_id = world.track(op)
    world.poll_until(op_id, lambda r: r["state"] == "RUNNING")
    command = {"type": "cancel", "id": op_id, "reason": "not needed", "requested_by": "e2e"}
    ids = {world.topology.publish(world.settings.commands_topic, command, type="cancel") for _ in range(2)}
    threads = [threading.Thread(target=world.cancel, args=(op_id,)) for _ in range(2)]  # and over HTTP
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    world.wait(lambda: world.record(op_id)["cancel"])
    record = world.poll_until(op_id, lambda r: r["state"] == "CANCELLED")
    outcomes = world.wait(lambda: world.outcomes(ids), lambda o: {"sent", "duplicate"} <= {x for _, x in o})
    assert sorted({x for _, x in outcomes} - {"EffectBusy"}) == ["duplicate", "sent"]
    assert world.sim.stats()["cancels"].get(op["name"]) == 1
    assert record["cancel"]["outcome"] == "sent" and record["cancel"]["api_status"]["code"] == 200
    published = [e for e in world.events_for(op_id) if e["type"] == "lro.cancel_outcome"]
    assert [e["outcome"] for e in published] == ["sent"]


def test_a_cancel_after_completion_makes_no_api_call_and_is_recorded_already_finished(world):
    op = world.sim.create(kind="documentai", running_s=0)  # an API that publishes :cancel
    op_id = world.track(op)
    world.poll_until(op_id, lambda r: r["state"] == "SUCCEEDED")
    world.cancel(op_id)
    world.cancel(op_id)
    cancel = world.wait(lambda: world.record(op_id)["cancel"])
    assert cancel["outcome"] == "already_finished" and cancel["api_status"] is None
    time.sleep(1)
    assert op["name"] not in world.sim.stats()["cancels"]
    published = [e for e in world.events_for(op_id) if e["type"] == "lro.cancel_outcome"]
    assert [e["outcome"] for e in published] == ["already_finished"]


def test_an_operation_that_succeeds_despite_a_cancel_request_is_recorded_succeeded(world):
    # It runs until the simulator's clock is moved on, after the cancel reached the API, however
    # slow the machine (a fixed running time could end before the cancel got there).
    op = world.sim.create(kind="documentai", running_s=3600, ignore_cancel=True)
    op_id = world.track(op)
    world.poll_until(op_id, lambda r: r["state"] == "RUNNING")
    world.cancel(op_id)
    world.wait(lambda: (world.record(op_id).get("cancel") or {}).get("outcome"))
    world.sim.advance(3600)
    record = world.poll_until(op_id, lambda r: r["state"] in ("SUCCEEDED", "CANCELLED", "FAILED"))
    assert record["state"] == "SUCCEEDED" and record["cancel"]["outcome"] == "sent"
    assert world.sim.stats()["cancels"].get(op["name"]) == 1


# --- poison, outages, dead letters ------------------------------------------------------

def test_poison_messages_are_acknowledged_logged_once_and_change_nothing(world):
    commands, events = world.settings.commands_topic, world.settings.events_topic
    ids = {
        world.topology.publish(commands, b"not json at all"): "Undecodable",
        world.topology.publish(commands, b"\xff\xfe\x00"): "Undecodable",
        world.topology.publish(commands, b"[1, 2, 3]"): "UnreadableMessage",
        world.topology.publish(commands, {"type": "launch_missiles", "id": "0" * 32}): "UnknownType",
        world.topology.publish(commands, {"type": "cancel", "id": "../../../etc"}): "UnreadableMessage",
        world.topology.publish(commands, {"type": "cancel", "id": "f" * 32}): "UnknownOperation",
        world.topology.publish(events, {"type": "lro.state_changed", "operation": {"id": "e" * 32},
                                        "state": "SUCCEEDED", "sequence": "two"}, ordering_key="e" * 32):
            "UnreadableMessage",
    }
    world.wait(lambda: world.outcomes(set(ids)), lambda o: len(o) >= len(ids))
    time.sleep(3)  # a redelivery, if any, would show up by now
    outcomes = world.outcomes(set(ids))
    assert sorted(outcomes) == sorted(ids.items())  # each delivered once, each dropped for its reason
    errors = [e for e in world.handle_log() if e.get("message_id") in ids]
    assert all(e["severity"] == "ERROR" and e["message"].startswith("dropping") for e in errors)
    assert not [key for key in world.claim_keys() if any(c * 32 in key for c in "0ef")]
    assert not [op_id for op_id in world.record_ids() if op_id in ("0" * 32, "e" * 32, "f" * 32)]
    assert world.topology.pull_all(f"{commands}-handle-dlq", timeout=1) == []


def test_a_transient_store_failure_gets_a_5xx_and_the_redelivery_completes_once(world, tmp_path):
    op = world.sim.create(kind="vision", running_s=0)
    with world.events_push_paused() as subscription:
        op_id = world.track(op, notify_topic=world.notify_topic)
        record = world.poll_until(op_id, lambda r: r["state"] == "SUCCEEDED")
        events = [m for m in world.topology.pull_all(subscription, timeout=3, expect=record["sequence"])
                  if m.ordering_key == op_id]
    terminal = max(events, key=lambda m: m.json()["sequence"])

    # A second handle whose Firestore is reached through a link we can cut.
    link = Link(world.stack.env["FIRESTORE_EMULATOR_HOST"])
    env = {**world.stack.env, "FIRESTORE_EMULATOR_HOST": link.address}
    process = function_process("handle", env=env, run_dir=tmp_path)
    with process:
        envelope = {"subscription": "direct", "message": {
            "data": base64.b64encode(terminal.data).decode(), "messageId": "direct-1",
            "attributes": terminal.attributes}}
        request = urllib.request.Request(process.url, data=json.dumps(envelope).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 500  # store down: Pub/Sub is asked to redeliver

        # Through Pub/Sub: fails while the link is down, completes on a redelivery once it is up.
        world.topology.create_push_subscription("outage-events", "outage-events-handle", process.url)
        message_id = world.topology.publish("outage-events", terminal.data, ordering_key=op_id,
                                            **terminal.attributes)
        world.wait(lambda: world.outcomes({message_id}, process))
        link.up()
        outcomes = world.wait(lambda: world.outcomes({message_id}, process),
                              lambda o: o[-1][1] == "completed", timeout=40)
        link.down()
    assert {o for _, o in outcomes[:-1]} <= {"ClaimsUnavailable", "ServiceUnavailable", "RetryError"}
    assert len(outcomes) >= 2
    assert world.record(op_id)["completion"]["event_id"] == terminal.json()["event_id"]
    assert [n["state"] for n in world.notes_for(op_id)] == ["SUCCEEDED"]


def test_a_message_that_keeps_failing_is_dead_lettered_and_dlq_replay_brings_it_back(world):
    commands = world.settings.commands_topic
    dead_letters = f"{commands}-handle-dlq"
    op = world.sim.create(kind="documentai", running_s=60,
                          faults=[{"status": 503, "times": 5, "on": "cancel"}])
    op_id = world.track(op)
    world.poll_until(op_id, lambda r: r["state"] == "RUNNING")
    world.topology.publish(commands, {"type": "cancel", "id": op_id, "reason": "dlq"},
                           type="cancel", operation_id=op_id)
    world.wait(lambda: world.sim.stats()["cancels"].get(op["name"]) == 5, timeout=60)
    assert world.record(op_id)["cancel"] is None

    # The dead letter shows up on the hold subscription; a dry run leaves it there.
    peek = world.wait(lambda: replay(dead_letters, commands, project=world.settings.project, dry_run=True),
                      lambda report: report.pulled, timeout=30)
    assert peek.pulled == 1 and peek.republished == 0  # dead-lettered copies get new message ids

    env = {**world.stack.env, "GOOGLE_CLOUD_PROJECT": world.settings.project}
    result = subprocess.run([sys.executable, "-m", "functions.dlq", "replay", "--subscription", dead_letters,
                             "--topic", commands, "--limit", "10"], cwd=REPO_ROOT, env=_env(env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["republished"] == 1

    cancel = world.wait(lambda: world.record(op_id)["cancel"], timeout=30)
    assert cancel["outcome"] == "sent" and cancel["reason"] == "dlq"
    assert world.sim.stats()["cancels"].get(op["name"]) == 6  # five 503s, then the one that landed
    assert world.topology.pull_all(dead_letters, timeout=1) == []


# --- notify_url at submit -------------------------------------------------------------

@pytest.mark.parametrize("notify_url", ["https://evil.example.com/hook", "http://127.0.0.1/hook"])
def test_a_notify_url_outside_the_allowlist_is_refused_at_submit(world, notify_url):
    op = world.sim.create(kind="vision", running_s=0)
    with pytest.raises(urllib.error.HTTPError) as refused:
        world.track(op, notify_url=notify_url)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["status"] == "INVALID_ARGUMENT"


def _env(overrides: dict) -> dict:
    import os

    env = dict(os.environ)
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env
