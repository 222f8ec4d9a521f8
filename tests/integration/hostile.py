"""A hostile Operations API for tests: answers lrowatch must survive, beside an honest one.

It stands where LRO_API_BASE_URL points. A request whose operation id (or, for a
listing, a segment of the parent) starts with `hostile-` gets the answer named
after that prefix (`hostile-deep-1` → MODES["deep"]) or one set with `script()`;
every other request is passed on to the simulator unchanged.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests

HANG_S = 12.0  # past OperationsApi's 10 s timeout


def _operation(name: str, **fields) -> bytes:
    return json.dumps({"name": name, **fields}).encode()


def _details(name: str) -> bytes:  # about 2 MB of error details
    details = [{"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": "x" * 1000}] * 2000
    return _operation(name, done=True, error={"code": 13, "message": "internal", "details": details})


def _gzip_bomb(name: str) -> bytes:
    """200 KB on the wire, 50 MB of JSON once inflated (past OperationsApi's 10 MB cap)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    zeros = b"0" * 1_000_000
    parts = [deflate.compress(b'{"name": "%s", "done": true, "metadata": {"blob": "' % name.encode())]
    parts += [deflate.compress(zeros) for _ in range(50)]
    return b"".join(parts + [deflate.compress(b'"}}'), deflate.flush()])


# mode → (status, headers, body) for the operation `name`; None answers are special (hang, reset).
MODES: dict[str, Callable[[str], tuple[int, dict, bytes] | str]] = {
    "deep": lambda name: (200, {}, b'{"name": "%s", "metadata": {"a": ' % name.encode() + b"[" * 5000
                          + b"]" * 5000 + b"}}"),
    "details": lambda name: (200, {}, _details(name)),
    "metadata": lambda name: (200, {}, _operation(name, done=True, response={},
                                                  metadata={"state": "SUCCEEDED", "blob": "x" * 5_000_000})),
    "nonjson": lambda name: (200, {"Content-Type": "text/html"}, b"<html><body>Service Unavailable</body></html>"),
    "array": lambda name: (200, {}, json.dumps([{"name": name, "done": True, "response": {}}]).encode()),
    "types": lambda name: (200, {}, _operation(name, done="yes", metadata=["not", "an", "object"])),
    "redirect": lambda name: (302, {"Location": "https://attacker.example.com/steal"}, b""),
    "hang": lambda name: "hang",
    "mismatch": lambda name: (200, {}, _operation(name.rsplit("/", 1)[0] + "/someone-elses", done=True,
                                                  response={"secret": "not yours"})),
    "reset": lambda name: "reset",
    "bomb": lambda name: (200, {"Content-Encoding": "gzip"}, _gzip_bomb(name)),
}


class HostileApi:
    """Serve in a daemon thread; `base_url` is LRO_API_BASE_URL, `upstream` the honest API."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.scripted: dict[str, tuple[int, dict, bytes]] = {}
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, operation_id: str, status: int, body: bytes, headers: dict | None = None) -> None:
        """Answer requests for `operation_id` (a `hostile-…` id) with exactly this."""
        with self._lock:
            self.scripted[operation_id] = (status, headers or {}, body)

    def answer(self, path: str) -> tuple[int, dict, bytes] | str | None:
        resource = path.split("?", 1)[0]
        name = resource.split("/v1/", 1)[-1].removesuffix(":cancel")
        # The operation id, or for a listing the parent's segment that names the mode.
        operation_id = next((s for s in reversed(name.split("/")) if s.startswith("hostile-")), None)
        if operation_id is None:
            return None
        with self._lock:
            self.requests.append(operation_id)
            if operation_id in self.scripted:
                return self.scripted[operation_id]
        mode = operation_id.split("-")[1]
        return MODES[mode](name)

    def count(self, operation_id: str) -> int:
        with self._lock:
            return self.requests.count(operation_id)

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a reset connection is the point, not news
        pass


def _handler(api: HostileApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            self._serve()

        def do_POST(self):
            self._serve()

        def _serve(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = api.answer(self.path)
            if answer is None:
                return self._forward(body)
            if answer == "hang":
                api.stopping.wait(HANG_S)
                self.close_connection = True
                return
            if answer == "reset":  # SO_LINGER 0: close() sends a TCP RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            self._send(*answer)

        def _forward(self, body: bytes):
            upstream = requests.request(self.command, api.upstream + self.path, data=body or None,
                                        headers={"Content-Type": "application/json"}, allow_redirects=False,
                                        timeout=30)
            self._send(upstream.status_code, {"Content-Type": "application/json"}, upstream.content)

        def _send(self, status: int, headers: dict, body: bytes):
            self.send_response(status)
            headers = {"Content-Type": "application/json", **headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
