"""The simulator over real HTTP: Google-shaped endpoints, admin API, faults."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from functions.simulator.client import SimulatorAdmin, SimulatorError

DOCAI = "us-documentai.googleapis.com"
PARENT = "projects/1/locations/us"


@pytest.fixture
def server(simulator):
    return simulator.base_url


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


def docai(sim, **script):
    return sim.create(**{"host": DOCAI, "kind": "documentai", "project": "1", **script})


def list_url(sim, host=DOCAI, parent=PARENT):
    return f"{sim.base_url}/{host}/v1/{parent}/operations"


# ---- GET

def test_get_returns_the_operation_as_google_shapes_it(sim, http):
    op = docai(sim, running_s=5)
    assert op["url"].startswith("https://us-documentai.googleapis.com/v1/projects/1/locations/us/operations/")
    body = http.get(sim.op_url(op)).json()
    assert body["name"] == op["name"]
    assert body["done"] is False
    assert body["metadata"]["state"] == "RUNNING"


def test_advancing_the_clock_finishes_an_operation_without_sleeping(sim, http):
    op = docai(sim, running_s=60)
    sim.advance(61)
    body = http.get(sim.op_url(op)).json()
    assert body["done"] is True and body["metadata"]["state"] == "SUCCEEDED"


def test_an_unknown_operation_is_404_in_googles_error_body(sim, http):
    resp = http.get(f"{sim.base_url}/{DOCAI}/v1/{PARENT}/operations/nope")
    assert resp.status_code == 404
    assert resp.json()["error"]["status"] == "NOT_FOUND"
    assert resp.json()["error"]["code"] == 404


def test_the_same_name_on_another_regional_host_is_unknown(sim, http):
    op = docai(sim)
    resp = http.get(f"{sim.base_url}/eu-documentai.googleapis.com/v1/{op['name']}")
    assert resp.status_code == 404


def test_hosts_outside_googleapis_com_are_not_served(sim, http):
    resp = http.get(f"{sim.base_url}/example.com/v1/{PARENT}/operations/x")
    assert resp.status_code == 404
    assert resp.json()["error"]["status"] == "NOT_FOUND"


def test_an_expired_operation_answers_404(sim, http):
    op = docai(sim, running_s=1, expire_after_s=10)
    assert http.get(sim.op_url(op)).status_code == 200
    sim.advance(12)
    assert http.get(sim.op_url(op)).status_code == 404


def test_admin_expire_makes_later_gets_404(sim, http):
    op = docai(sim)
    sim.expire(op["name"])
    assert http.get(sim.op_url(op)).status_code == 404


# ---- cancel

def test_cancel_of_a_running_documentai_op_passes_through_cancelling_to_cancelled(sim, http):
    op = docai(sim, running_s=60, cancel_delay_s=1)
    resp = http.post(sim.op_url(op) + ":cancel")
    assert resp.status_code == 200 and resp.json() == {}
    assert http.get(sim.op_url(op)).json()["metadata"]["state"] == "CANCELLING"
    sim.advance(1)
    body = http.get(sim.op_url(op)).json()
    assert body["done"] is True
    assert body["metadata"]["state"] == "CANCELLED"
    assert body["error"]["code"] == 1


def test_cancel_of_a_finished_op_is_refused_with_failed_precondition(sim, http):
    op = docai(sim, running_s=1)
    sim.advance(2)
    resp = http.post(sim.op_url(op) + ":cancel")
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_cancel_of_an_unknown_op_is_404(sim, http):
    assert http.post(f"{sim.base_url}/{DOCAI}/v1/{PARENT}/operations/nope:cancel").status_code == 404


def test_an_op_that_ignores_cancel_accepts_it_and_still_succeeds(sim, http):
    op = docai(sim, running_s=5, ignore_cancel=True)
    assert http.post(sim.op_url(op) + ":cancel").status_code == 200
    sim.advance(6)
    body = http.get(sim.op_url(op)).json()
    assert body["metadata"]["state"] == "SUCCEEDED" and "response" in body
    assert sim.stats()["cancels"] == {op["name"]: 1}


# ---- list

def test_list_pages_through_every_operation_of_a_parent_once(sim, http):
    names = {o["name"] for o in sim.create_many(
        [{"host": DOCAI, "kind": "documentai", "project": "1"} for _ in range(7)])}
    docai(sim, project="2")  # another parent: not listed
    seen, token = [], None
    while True:
        params = {"pageSize": 3, **({"pageToken": token} if token else {})}
        body = http.get(list_url(sim), params=params).json()
        seen += [o["name"] for o in body["operations"]]
        token = body.get("nextPageToken")
        if not token:
            break
    assert len(seen) == 7 and set(seen) == names


def test_list_filters_by_type_and_done(sim, http):
    finished = docai(sim, running_s=1)
    docai(sim, running_s=100)
    docai(sim, running_s=1, type="OTHER")
    sim.advance(2)
    body = http.get(list_url(sim), params={"filter": "TYPE=BATCH_PROCESS_DOCUMENTS AND done=true"}).json()
    assert [o["name"] for o in body["operations"]] == [finished["name"]]
    assert "nextPageToken" not in body


def test_an_unknown_filter_is_invalid_argument(sim, http):
    resp = http.get(list_url(sim), params={"filter": "state=RUNNING"})
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_a_garbled_page_token_is_invalid_argument(sim, http):
    assert http.get(list_url(sim), params={"pageToken": "!!"}).status_code == 400


# ---- admin

def test_batch_creation_makes_thousands_of_operations_quickly(sim):
    started = time.monotonic()
    ops = sim.create_many([{"kind": "vision"} for _ in range(5000)])
    assert len({o["name"] for o in ops}) == 5000
    assert sim.stats()["operations"] == 5000
    assert time.monotonic() - started < 10


def test_a_duplicate_name_is_refused_with_409(sim):
    op = docai(sim)
    with pytest.raises(SimulatorError) as exc:
        sim.create(host=DOCAI, kind="documentai", name=op["name"])
    assert exc.value.status == 409


def test_an_invalid_script_is_refused_with_400(sim):
    with pytest.raises(SimulatorError) as exc:
        sim.create(kind="documentai", outcome="maybe")
    assert exc.value.status == 400 and exc.value.body["error"]["status"] == "INVALID_ARGUMENT"


def test_the_request_log_shows_headers_but_hides_the_token(sim, http):
    op = docai(sim)
    http.get(sim.op_url(op), headers={"Authorization": "Bearer secret", "x-goog-user-project": "billing"})
    last = sim.requests(limit=1)[0]
    assert last["method"] == "GET" and last["status"] == 200
    assert last["headers"]["authorization"] == "present"
    assert last["headers"]["x-goog-user-project"] == "billing"
    assert "secret" not in str(sim.requests())


def test_stats_count_gets_lists_and_requests(sim, http):
    op = docai(sim)
    http.get(sim.op_url(op))
    http.get(sim.op_url(op))
    http.get(list_url(sim))
    stats = sim.stats()
    assert stats["gets"] == {op["name"]: 2}
    assert stats["lists"] == 1 and stats["requests"] == 3


def test_reset_forgets_everything(sim, http):
    op = docai(sim)
    http.get(sim.op_url(op))
    sim.reset()
    assert http.get(sim.op_url(op)).status_code == 404
    assert sim.stats()["gets"] == {op["name"]: 1}


# ---- faults

def test_scripted_per_op_faults_fail_the_first_gets_then_recover(sim, http):
    op = docai(sim, faults=[{"status": 503, "times": 2}])
    codes = [http.get(sim.op_url(op)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert sim.stats()["faults_injected"] == 2


def test_global_429_faults_carry_retry_after(sim, http):
    op = docai(sim)
    sim.set_faults(rate=1.0, kinds=["429"], retry_after_s=7)
    resp = http.get(sim.op_url(op))
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"
    assert resp.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    sim.clear_faults()
    assert http.get(sim.op_url(op)).status_code == 200


def test_faults_never_touch_the_admin_api(sim):
    sim.set_faults(rate=1.0, kinds=["500"])
    assert docai(sim)["name"]
    assert sim.stats()["faults_injected"] == 0


def test_a_seeded_fault_rate_is_reproducible(sim, http):
    op = docai(sim)

    def run():
        sim.set_faults(rate=0.5, kinds=["500", "503"], seed=7)
        return [http.get(sim.op_url(op)).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 200 in first and {500, 503} & set(first)


def test_garbage_is_a_200_with_malformed_json(sim, http):
    op = docai(sim)
    sim.set_faults(rate=1.0, kinds=["garbage"])
    resp = http.get(sim.op_url(op))
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()


def test_reset_drops_the_connection(sim):
    op = docai(sim)
    sim.set_faults(rate=1.0, kinds=["reset"])
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.op_url(op), timeout=5)


def test_timeout_holds_the_request_past_the_clients_deadline(sim):
    op = docai(sim)
    sim.set_faults(rate=1.0, kinds=["timeout"], timeout_s=0.5, timeout_sleep_s=1)
    with pytest.raises(requests.Timeout):
        requests.get(sim.op_url(op), timeout=0.3)
    sim.clear_faults()


def test_latency_is_applied_outside_the_lock_so_concurrent_polls_overlap(sim):
    ops = sim.create_many([{"host": DOCAI, "kind": "documentai"} for _ in range(32)])
    sim.set_faults(rate=0, latency_ms=200)
    results = []

    def poll(op):
        results.append(requests.get(sim.op_url(op), timeout=5).status_code)

    threads = [threading.Thread(target=poll, args=(op,)) for op in ops]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 32
    assert time.monotonic() - started < 1.5  # serial would take 6.4 s


# ---- command line

def test_the_module_prints_its_ready_line_and_serves():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "functions.simulator", "--port", "0"],
                            cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("SIMULATOR_READY http://127.0.0.1:")
        assert SimulatorAdmin(line.split()[1]).healthy()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
