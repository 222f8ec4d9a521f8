"""HostPools, the Operations API client's connection pools: every request reaches the server
exactly as urllib3's own PoolManager sends it (real HTTP on 127.0.0.1, no emulators)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from functions.adapters.operations_api import HostPools, OperationsApi
from functions.domain.names import build_ref


class Recorder:
    """An HTTP server that answers 200 and remembers each request's line and headers."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append((self.requestline, sorted(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


PATHS = [
    "/us-documentai.googleapis.com/v1/projects/123/locations/us/operations/bc4e1d412863e626",
    "/vision.googleapis.com/v1/locations/us-west1/operations/abc:cancel",
    "/h/v1/projects/p/a%2fb",          # an escape urllib3 normalises
    "/h/v1/projects/p/a%2Fb",
    "/h/v1/projects/p/../q/./r",       # dot segments urllib3 removes
    "/h/v1/projects/p/a b",            # a character urllib3 escapes
    "/h/v1/operations?pageSize=5&filter=done%3Dtrue",
    "/h/v1/x#fragment",
    "/",
]


def sent(pools, url: str, headers: dict) -> urllib3.BaseHTTPResponse:
    response = pools.urlopen("GET", url, headers=headers, redirect=False, retries=False, preload_content=False)
    response.read()
    response.release_conn()
    return response


@pytest.mark.parametrize("path", PATHS)
def test_a_request_reaches_the_server_as_urllib3s_own_pool_manager_sends_it(recorder, path):
    headers = {"x-goog-user-project": "billing"}
    sent(urllib3.PoolManager(retries=False), recorder.origin + path, headers)
    sent(HostPools(retries=False), recorder.origin + path, headers)
    assert len(recorder.seen) == 2
    assert recorder.seen[0] == recorder.seen[1]


def test_built_operation_urls_take_the_short_way_to_their_hosts_pool(recorder):
    pools = HostPools(retries=False)
    api = OperationsApi(recorder.origin, http_factory=lambda: pools)
    for n in range(3):
        api.get(build_ref(f"projects/123/locations/us/operations/op-{n}", "documentai"))
    assert len(recorder.seen) == 3
    assert list(pools._by_origin) == [recorder.origin]  # one pool, found by its origin


def test_no_more_pools_are_remembered_than_pool_manager_keeps(recorder):
    pools = HostPools(num_pools=2, retries=False)
    others = [Recorder(), Recorder()]
    try:
        for server in (recorder, *others):
            sent(pools, server.origin + PATHS[0], {})
        assert [len(server.seen) for server in (recorder, *others)] == [1, 1, 1]
        assert 0 < len(pools._by_origin) <= 2
    finally:
        for server in others:
            server.close()


def test_a_pool_closed_meanwhile_is_replaced_by_a_fresh_one(recorder):
    pools = HostPools(retries=False)
    url = recorder.origin + PATHS[0]
    sent(pools, url, {})
    first = pools._by_origin[recorder.origin]
    pools.clear()  # what urllib3 1.26 does to a pool it evicts: forgets it and closes it
    first.close()
    sent(pools, url, {})
    assert pools._by_origin[recorder.origin] is not first and len(recorder.seen) == 2
