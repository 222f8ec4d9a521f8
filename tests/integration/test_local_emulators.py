"""The Firestore and Pub/Sub emulators as the local stack and the tests use them."""
from __future__ import annotations

import os
import urllib.request

import psutil
from google.cloud import firestore

from functions.local.emulators import Emulators
from functions.local.topology import MAX_DELIVERY_ATTEMPTS, Topology


def _answers_ok(host: str) -> bool:
    with urllib.request.urlopen(f"http://{host}/", timeout=2) as response:
        return response.read().decode().strip() == "Ok"


def test_both_emulators_are_ready_and_named_in_the_environment(emulators):
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == emulators.env()["FIRESTORE_EMULATOR_HOST"]
    assert os.environ["PUBSUB_EMULATOR_HOST"] == emulators.env()["PUBSUB_EMULATOR_HOST"]
    assert all(host.startswith("127.0.0.1:") for host in emulators.env().values())
    assert _answers_ok(emulators.firestore.host) and _answers_ok(emulators.pubsub.host)


def test_a_firestore_document_written_can_be_read_back(emulators, project_id):
    client = firestore.Client(project=project_id)
    client.collection("things").document("a").set({"n": 1})

    assert client.collection("things").document("a").get().to_dict() == {"n": 1}


def test_clearing_firestore_removes_only_that_projects_documents(emulators, project_id):
    mine, other = firestore.Client(project=project_id), firestore.Client(project=project_id + "-other")
    mine.collection("things").document("a").set({"n": 1})
    other.collection("things").document("b").set({"n": 2})

    emulators.clear_firestore(project_id)

    assert not mine.collection("things").document("a").get().exists
    assert other.collection("things").document("b").get().exists


def test_a_published_message_can_be_pulled_from_a_new_topic(emulators, settings):
    with Topology(settings) as topology:
        subscription = topology.create_pull_subscription("observed", "observed-test")
        topology.publish("observed", {"hello": "world"}, ordering_key="op-1", kind="greeting")

        messages = topology.pull_all(subscription, timeout=10, expect=1)

    assert [m.json() for m in messages] == [{"hello": "world"}]
    assert messages[0].attributes == {"kind": "greeting"}


def test_topology_builds_push_subscriptions_with_dead_letters_and_ordering_idempotently(emulators, settings):
    urls = {"handle": "http://127.0.0.1:9/", "submit_pubsub": "http://127.0.0.1:10"}
    with Topology(settings) as topology:
        topology.build(urls)
        subscriptions = topology.build({**urls, "handle": "http://127.0.0.1:11"})  # again: no AlreadyExists
        events = topology.subscriber.get_subscription(request={"subscription": subscriptions["events"]})
        commands = topology.subscriber.get_subscription(request={"subscription": subscriptions["commands"]})
        submissions = topology.subscriber.get_subscription(request={"subscription": subscriptions["submissions"]})

    assert events.topic == settings.topic_path(settings.events_topic)
    assert events.push_config.push_endpoint == "http://127.0.0.1:11/"
    assert events.enable_message_ordering and not commands.enable_message_ordering
    assert submissions.push_config.push_endpoint == "http://127.0.0.1:10/"
    assert events.dead_letter_policy.dead_letter_topic == settings.topic_path("lro-events-handle-dlq")
    assert events.dead_letter_policy.max_delivery_attempts == MAX_DELIVERY_ATTEMPTS


def test_stopping_the_emulators_leaves_no_java_process(tmp_path):
    with Emulators(run_dir=tmp_path) as own:
        pids = [process.pid for process in own.processes]
        assert all(psutil.pid_exists(pid) for pid in pids)

    assert not any(psutil.pid_exists(pid) for pid in pids)
    ports = {str(process.port) for process in own.processes}
    leftovers = [p for p in psutil.process_iter(["name", "cmdline"])
                 if p.info["name"] == "java" and any(port in " ".join(p.info["cmdline"] or []) for port in ports)]
    assert leftovers == []
    assert (tmp_path / own.firestore.log_path.name).exists()
