"""Failed items and the ETA on the real emulators: the simulator's Document AI batch with
failing documents and Vision import with failing lines polled by the poll service, read
back through `submit`'s HTTP surface (functions-framework) and by `lrowatch items` over
HTTP, and a progress-reporting operation getting an estimate."""
from __future__ import annotations

import csv
import io
import json
import threading
import time
from contextlib import contextmanager
from datetime import datetime

import pytest
import requests

from functions.adapters.firestore_durations import FirestoreDurations
from functions.adapters.firestore_store import FirestoreStore
from functions.cli import main as cli
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.domain import learning
from functions.domain.record import rfc3339
from functions.services.poll import PollService
from functions.services.submit import SubmitService
from functions.simulator.client import SimulatorAdmin
from tests.integration.helpers import api_app, create_topics, pull_messages, pull_subscription

FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}


@pytest.fixture
def world(emulators, simulator, project_id, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
    monkeypatch.setenv("LRO_API_BASE_URL", simulator.base_url)
    settings = Settings(project=project_id, api_base_url=simulator.base_url, poll_budget_s=10)
    create_topics(project_id, "lro-events", "lro-commands")
    pull_subscription(project_id, "lro-events", "events-tap")
    store = FirestoreStore(project_id, settings.collection)
    publisher = Publisher()
    submit = SubmitService(settings, store, publisher)
    poll = PollService(settings, store, OperationsApi(simulator.base_url), publisher)
    return submit, poll, store, SimulatorAdmin(simulator.base_url), api_app("submit").test_client()


def poll_until(poll, store, op_id: str, done, runs: int = 20):
    for _ in range(runs):
        poll.run(budget_s=1)
        record = store.get(op_id)
        if done(record):
            return record
        time.sleep(0.3)
    raise AssertionError(f"gave up polling; last state {record.state.value}")


def test_a_document_ai_batch_with_failing_documents_is_read_back_page_by_page(world, project_id):
    submit, poll, store, sim, http = world
    op = sim.create(kind="documentai", running_s=0.3, items=40, failed_items=13)
    record, _ = submit.submit({"url": op["url"], "policy": FAST})
    final = poll_until(poll, store, record.id, lambda r: r.state.terminal)
    assert final.state.value == "SUCCEEDED"
    assert final.items == {"total": 40, "failed": 13}

    pages, params = [], "state=failed&page_size=5"
    while True:
        answer = http.get(f"/operations/{record.id}/items?{params}")
        assert answer.status_code == 200, answer.json
        pages.append(answer.json)
        if "next_page_token" not in answer.json:
            break
        params = f"state=failed&page_size=5&page_token={answer.json['next_page_token']}"
    assert [len(p["items"]) for p in pages] == [5, 5, 3]
    assert {p["total_size"] for p in pages} == {13}
    failed = [item for p in pages for item in p["items"]]
    op_id = op["name"].rsplit("/", 1)[-1]
    assert [i["input"] for i in failed] == [f"gs://sim-input/{op_id}/doc-{n}.pdf" for n in range(13)]
    assert {i["status"]["code"] for i in failed} == {3}

    events = pull_messages(project_id, "events-tap", expect=final.sequence)
    last = max(events, key=lambda e: e["sequence"])
    assert last["items"]["failed"] == 13
    assert last["items"]["first_failed"] == failed[:5]


def test_bad_item_queries_get_google_style_errors(world):
    submit, poll, store, sim, http = world
    op = sim.create(kind="documentai", running_s=60)
    record, _ = submit.submit({"url": op["url"]})
    for query, status in (("state=succeeded", 400), ("page_size=0", 400), ("page_token=zzz", 400)):
        answer = http.get(f"/operations/{record.id}/items?{query}")
        assert answer.status_code == status and answer.json["error"]["status"] == "INVALID_ARGUMENT"
    assert http.get(f"/operations/{'0' * 32}/items").status_code == 404
    assert http.post(f"/operations/{record.id}/items").status_code == 405
    empty = http.get(f"/operations/{record.id}/items")
    assert empty.status_code == 200 and empty.json == {"items": [], "total_size": 0, "kept": 0}

    # A page token belongs to the listing that made it: another operation's is refused, not served.
    other = sim.create(kind="documentai", running_s=0.3, items=8, failed_items=8)
    other_record, _ = submit.submit({"url": other["url"], "policy": FAST})
    poll_until(poll, store, other_record.id, lambda r: r.state.terminal)
    token = http.get(f"/operations/{other_record.id}/items?page_size=5").json["next_page_token"]
    assert http.get(f"/operations/{other_record.id}/items?page_size=5&page_token={token}").status_code == 200
    foreign = http.get(f"/operations/{record.id}/items?page_size=5&page_token={token}")
    assert foreign.status_code == 400 and foreign.json["error"]["status"] == "INVALID_ARGUMENT"
    message = foreign.json["error"]["message"]
    assert "another operation" in message and "without page_token" in message


def test_a_progress_reporting_operation_gets_an_eta_that_is_served_and_cleared_when_done(world, simulator):
    submit, poll, store, sim, http = world
    op = sim.create(kind="generic", running_s=300, cancel_delay_s=0.5)  # Speech-style progressPercent
    record, _ = submit.submit({"url": op["url"], "policy": FAST})
    running = poll_until(poll, store, record.id, lambda r: r.eta is not None)
    assert running.state.value == "RUNNING" and running.eta_basis == "progress"
    served = http.get(f"/operations/{record.id}").json
    assert served["eta_basis"] == "progress"
    assert served["eta_low"] <= served["eta"] <= served["eta_high"]
    # End it early (the API's own :cancel on the simulator): a finished operation has no estimate.
    cancelled = requests.post(f"{simulator.base_url}/{op['url'][len('https://'):]}:cancel", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    final = poll_until(poll, store, record.id, lambda r: r.state.terminal)
    assert final.eta is None and "eta" not in http.get(f"/operations/{record.id}").json


@contextmanager
def served(app):
    """The submit app on a real port: `lrowatch` speaks HTTP, not Flask's test client."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def lrowatch(capsys, *argv: str) -> tuple[int, str]:
    """`lrowatch ARGV…` in this process: (exit code, stdout)."""
    code = cli(list(argv))
    return code, capsys.readouterr().out


def every_failed_item(http, op_id: str, page_size: int) -> list[dict]:
    pages, params = [], f"state=failed&page_size={page_size}"
    while True:
        answer = http.get(f"/operations/{op_id}/items?{params}")
        assert answer.status_code == 200, answer.json
        pages.append(answer.json)
        if "next_page_token" not in answer.json:
            return pages
        params = f"state=failed&page_size={page_size}&page_token={answer.json['next_page_token']}"


def test_lrowatch_items_lists_the_failed_documents_of_a_document_ai_batch(world, capsys):
    submit, poll, store, sim, http = world
    op = sim.create(kind="documentai", running_s=0.3, items=40, failed_items=13)
    record, _ = submit.submit({"url": op["url"], "policy": FAST})
    poll_until(poll, store, record.id, lambda r: r.state.terminal)
    op_id = op["name"].rsplit("/", 1)[-1]
    inputs = [f"gs://sim-input/{op_id}/doc-{n}.pdf" for n in range(13)]

    with served(http.application) as url:
        plain = lrowatch(capsys, "items", record.id, "--failed", "--url", url)
        as_csv = lrowatch(capsys, "items", record.id, "--failed", "--csv", "--url", url)
        as_json = lrowatch(capsys, "items", record.id, "--failed", "--json", "--url", url)
    assert plain == (0, "".join(f"{i}\n" for i in inputs))  # one per line, ready to resubmit
    assert as_csv[0] == 0
    rows = list(csv.DictReader(io.StringIO(as_csv[1])))
    assert [(r["index"], r["input"], r["code"], r["message"]) for r in rows] == [
        (str(n), i, "3", "Unsupported input file format.") for n, i in enumerate(inputs)]
    assert as_json[0] == 0
    answer = json.loads(as_json[1])
    assert answer["total_size"] == 13 and [i["input"] for i in answer["items"]] == inputs



def test_a_vision_import_with_failures_serves_their_statuses_and_the_true_count(world, capsys):
    submit, poll, store, sim, http = world
    # More failures than the record keeps (1,000): the count stays true, the list is the first 1,000.
    op = sim.create(kind="vision", running_s=0.3, items=1100, failed_items=1050)
    record, _ = submit.submit({"url": op["url"], "policy": FAST})
    final = poll_until(poll, store, record.id, lambda r: r.state.terminal)
    assert final.state.value == "SUCCEEDED"  # SUCCESSFUL: some lines went through
    assert final.items == {"total": 1100, "failed": 1050, "failed_kept": 1000}

    pages = every_failed_item(http, record.id, page_size=400)
    assert [len(p["items"]) for p in pages] == [400, 400, 200]
    assert {(p["total_size"], p["kept"]) for p in pages} == {(1050, 1000)}
    served_items = [item for p in pages for item in p["items"]]
    assert [i["index"] for i in served_items] == list(range(1000))  # the lines of the import CSV
    assert [i["status"] for i in served_items] == [
        {"code": 3, "message": f"Image gs://sim-input/img-{n}.jpg could not be read."} for n in range(1000)]
    assert not any(i.get("input") for i in served_items)  # a failed line is paired with no image

    with served(http.application) as url:
        code, out = lrowatch(capsys, "items", record.id, "--failed", "--json", "--url", url)
    assert code == 0 and json.loads(out) == {"items": served_items, "total_size": 1050}


def test_an_operation_handed_over_late_counts_its_time_from_its_apis_start(world, simulator, project_id):
    """Began elsewhere 10 minutes before it was submitted: the record, GET and its events say when it
    began, and the duration learnt from its finish counts from then, not from the hand-over."""
    submit, _, store, sim, http = world
    settings = Settings(project=project_id, api_base_url=simulator.base_url, poll_budget_s=10)
    durations = FirestoreDurations(store, settings.durations_collection)
    poll = PollService(settings, store, OperationsApi(simulator.base_url), Publisher(), durations=durations)
    op = sim.create(kind="documentai", created_ago_s=600, running_s=610)  # ends ~10 s after the hand-over
    record, _ = submit.submit({"url": op["url"], "policy": FAST})
    running = poll_until(poll, store, record.id, lambda r: r.seen)
    assert running.state.value == "RUNNING"
    assert running.started_at == datetime.fromisoformat(running.metadata["createTime"])  # kept to the microsecond
    assert 599 <= (record.submitted_at - running.started_at).total_seconds() <= 610
    assert http.get(f"/operations/{record.id}").json["started_at"] == rfc3339(running.started_at)

    final = poll_until(poll, store, record.id, lambda r: r.state.terminal, runs=60)
    assert final.started_at == running.started_at
    learnt = durations.read([learning.kind_key(final)])[learning.kind_key(final)]
    assert learnt.count == 1 and 540 <= learnt.quantile(0.5) <= 680  # ~610 s, not the ~10 s since the hand-over
    events = pull_messages(project_id, "events-tap", expect=2)
    assert [e["started_at"] for e in events] == [rfc3339(running.started_at)] * 2
