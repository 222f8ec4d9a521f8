"""A poll run's GETs on one event loop (functions/adapters/async_gets.py), over real HTTP:
they are in flight together, on one thread, and a 401 refreshes the token once.
(Hostile answers are tested for both ways of GETting in test_operations_api_hostile.py.)"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from functions.adapters.async_gets import AsyncGets
from functions.adapters.operations_api import MAX_ANSWER_BYTES, OperationsApi
from functions.domain.names import build_ref

TOGETHER = 32


class Api(ThreadingHTTPServer):
    """An Operations API on 127.0.0.1 answering every GET with `status` after `delay_s`. With
    `together`, an operation's GET is answered only once that many wait at once (a barrier), 503 if
    they never do: GETs sent one after another cannot pass. Notes each Authorization header."""

    daemon_threads = True

    def __init__(self, together: int | None = None, delay_s: float = 0.0):
        self.barrier = threading.Barrier(together, timeout=10) if together else None
        self.delay_s = delay_s
        self.authorizations: list[str | None] = []
        self.status = 200
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Api

    def do_GET(self):
        self.server.authorizations.append(self.headers.get("Authorization"))
        time.sleep(self.server.delay_s)
        status, body = self.server.status, {"name": self.path.split("/v1/", 1)[1], "done": False}
        if status != 200:
            body = {"error": {"code": status, "status": "UNAUTHENTICATED", "message": "token expired"}}
        elif self.server.barrier is not None:
            try:
                self.server.barrier.wait()
            except threading.BrokenBarrierError:
                status, body = 503, {"error": {"code": 503, "message": "the GETs did not come together"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = Api(together=TOGETHER)
    yield server
    server.close()


def refs(n: int):
    return [build_ref(f"projects/123/locations/us/operations/op-{i}", "documentai") for i in range(n)]


def test_gets_started_together_are_in_flight_together_on_the_one_event_loop_thread(server):
    api = OperationsApi(server.url, pool_size=TOGETHER)
    wanted = refs(TOGETHER)
    before = set(threading.enumerate())
    answers = [f.result(timeout=30) for f in api.start_gets([(r, None) for r in wanted])]
    assert [a.get("name") for a in answers] == [r.name for r in wanted]  # every one passed the barrier
    started = [t.name for t in set(threading.enumerate()) - before if "process_request" not in t.name]
    assert started == ["operations-gets"]  # the client's one thread (the others are the server's)


class Credentials:
    """The surface of google.auth credentials that AsyncGets uses."""

    def __init__(self):
        self.token, self.refreshes = "token-0", 0
        self.valid = True

    def refresh(self, request):
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"

    def apply(self, headers):
        headers["authorization"] = f"Bearer {self.token}"


def gets_with(credentials, server) -> AsyncGets:
    return AsyncGets(OperationsApi(server.url).url_for, pool_size=4, timeout_s=5,
                     max_answer_bytes=MAX_ANSWER_BYTES, credentials=lambda: credentials)


def test_a_401_refreshes_the_token_once_and_then_stands_as_a_permanent_failure(server):
    credentials, server.status = Credentials(), 401
    failure = gets_with(credentials, server).start([(refs(1)[0], None)])[0].result(timeout=30)
    assert failure.kind == "permanent" and failure.status["status"] == "UNAUTHENTICATED"
    assert credentials.refreshes == 1
    assert server.authorizations == ["Bearer token-0", "Bearer token-1"]


def test_an_expired_token_is_refreshed_before_the_get_goes_out(server):
    credentials, server.status = Credentials(), 401
    credentials.valid = False
    gets_with(credentials, server).start([(refs(1)[0], None)])[0].result(timeout=30)
    assert server.authorizations[0] == "Bearer token-1"


def test_the_caller_owns_the_lists_it_passes_and_gets_back(server):
    """The loop starts the GETs after start() returned: what the caller does to its lists meanwhile
    (a wrapper popping the futures, say) must not stop any of them."""
    server.status = 401
    api = OperationsApi(server.url)
    requests = [(r, None) for r in refs(3)]
    futures = api.start_gets(requests)
    kept = list(futures)
    futures.clear()
    requests.clear()
    assert [f.result(timeout=30).kind for f in kept] == ["permanent"] * 3


def test_a_get_waiting_for_a_free_connection_is_not_timed_out_for_the_wait():
    """The timeout bounds each GET from when it goes out, as it did on threads: 16 GETs over 2
    connections to an API answering in 0.3 s each wait up to 2.1 s for a connection, beyond the
    2 s timeout, and every one is answered."""
    server = Api(delay_s=0.3)
    try:
        api = OperationsApi(server.url, pool_size=2, timeout_s=2)
        answers = [f.result(timeout=60) for f in api.start_gets([(r, None) for r in refs(16)])]
        assert all(isinstance(a, dict) for a in answers), [a for a in answers if not isinstance(a, dict)][:1]
    finally:
        server.close()
