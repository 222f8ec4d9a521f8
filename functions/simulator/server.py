"""The simulator's HTTP server: Google-shaped Operations endpoints plus /_sim admin.

Requests arrive as `/{google-host}/{version}/{resource}`. State lives in memory
behind one lock that is only held to read or update records; latency and
fault sleeps happen outside it so thousands of concurrent polls stay cheap.
Built on http.server (not a WSGI framework) because the `reset` fault needs
the raw socket to abort the connection.
"""
from __future__ import annotations

import base64
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from functions.simulator import model
from functions.simulator.model import Script, ScriptError

MAX_BODY_BYTES = 64 * 1024 * 1024  # batch creation of thousands of scripts
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
REQUEST_LOG_SIZE = 20_000  # room for a whole e2e module's GETs on a shared stack
GARBAGE_BODY = b'{"name": "operations/garbage", "done": tru'


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, status_name: str | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.status_name = status_name or model.HTTP_STATUS_NAMES.get(status, "UNKNOWN")

    def body(self) -> dict:
        return {"error": {"code": self.status, "message": self.message, "status": self.status_name}}


@dataclass
class GlobalFaults:
    rate: float = 0.0
    kinds: tuple[str, ...] = ()
    latency_ms: float = 0.0
    retry_after_s: float | None = None
    timeout_s: float = 30.0
    timeout_sleep_s: float | None = None  # default: timeout_s + 1
    seed: int | None = None

    def as_json(self) -> dict:
        return {"rate": self.rate, "kinds": list(self.kinds), "latency_ms": self.latency_ms,
                "retry_after_s": self.retry_after_s, "timeout_s": self.timeout_s,
                "timeout_sleep_s": self.timeout_sleep_s, "seed": self.seed}


def parse_global_faults(body: Any) -> GlobalFaults:
    if not isinstance(body, dict):
        raise ScriptError("faults must be a JSON object")
    rate = body.get("rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ScriptError("rate must be between 0 and 1")
    kinds = body.get("kinds", ["500"] if rate else [])
    if not isinstance(kinds, list):
        raise ScriptError("kinds must be a list")
    for kind in kinds:
        if kind not in model.FAULT_KINDS and not (str(kind).isdigit() and 400 <= int(kind) <= 599):
            raise ScriptError(f"unknown fault kind {kind!r}")
    if rate and not kinds:
        raise ScriptError("kinds must not be empty when rate > 0")

    def num(key, default):
        value = body.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ScriptError(f"{key} must be a non-negative number")
        return value

    return GlobalFaults(rate=float(rate), kinds=tuple(str(k) for k in kinds),
                        latency_ms=float(num("latency_ms", 0)), retry_after_s=num("retry_after_s", None),
                        timeout_s=float(num("timeout_s", 30.0)), timeout_sleep_s=num("timeout_sleep_s", None),
                        seed=body.get("seed"))


@dataclass
class OpRecord:
    script: Script
    seq: int
    cancel_at: float | None = None
    expired: bool = False
    faults_used: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """What to do to a request before (or instead of) serving it."""
    latency_s: float = 0.0
    kind: str | None = None       # an HTTP status as text, or timeout/garbage/reset
    retry_after_s: float | None = None
    sleep_s: float = 0.0


class SimState:
    """All mutable simulator state. Every method takes the lock briefly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.offset_s = 0.0
        self.ops: dict[tuple[str, str], OpRecord] = {}
        self.by_parent: dict[tuple[str, str], list[OpRecord]] = {}
        self.seq = 0
        self.gets: Counter = Counter()
        self.cancels: Counter = Counter()
        self.lists = 0
        self.requests = 0
        self.faults_injected = 0
        self.log: deque = deque(maxlen=REQUEST_LOG_SIZE)
        self.faults = GlobalFaults()
        self.rng = random.Random()
        # Timeout faults sleep on this event so reset/shutdown can wake them.
        old = getattr(self, "wake", None)
        self.wake = threading.Event()
        if old is not None:
            old.set()

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()

    def now(self) -> float:
        return time.time() + self.offset_s

    # ---- admin
    def create(self, bodies: list[Any]) -> list[Script]:
        now = self.now()
        scripts = [model.parse_script(b, now=now, new_id=lambda: os.urandom(8).hex()) for b in bodies]
        keys = [(s.host, s.name) for s in scripts]
        if len(set(keys)) != len(keys):
            raise HttpError(409, "Duplicate operation names in request.")
        with self.lock:
            for key in keys:
                if key in self.ops:
                    raise HttpError(409, f"Operation {key[1]} already exists.")
            for script in scripts:
                self.seq += 1
                rec = OpRecord(script, self.seq, faults_used=[0] * len(script.faults))
                self.ops[(script.host, script.name)] = rec
                self.by_parent.setdefault((script.host, script.parent), []).append(rec)
        return scripts

    def expire(self, name: str, host: str | None) -> int:
        with self.lock:
            hits = [r for (h, n), r in self.ops.items() if n == name and host in (None, h)]
            for rec in hits:
                rec.expired = True
        return len(hits)

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset_s += seconds

    def set_faults(self, faults: GlobalFaults) -> None:
        with self.lock:
            self.faults = faults
            self.rng = random.Random(faults.seed)

    def stats(self) -> dict:
        with self.lock:
            return {"gets": dict(self.gets), "cancels": dict(self.cancels), "lists": self.lists,
                    "requests": self.requests, "faults_injected": self.faults_injected,
                    "operations": len(self.ops)}

    def recent(self, limit: int) -> list[dict]:
        with self.lock:
            return list(self.log)[-limit:] if limit > 0 else []

    # ---- Google-shaped
    def count(self, action: str, name: str | None) -> None:
        with self.lock:
            self.requests += 1
            if action == "get":
                self.gets[name] += 1
            elif action == "cancel":
                self.cancels[name] += 1
            elif action == "list":
                self.lists += 1

    def decide(self, host: str, name: str | None, method: str) -> Decision:
        """Per-op scripted faults first (deterministic), then global random ones."""
        with self.lock:
            cfg = self.faults
            latency = cfg.latency_ms / 1000.0
            rec = self.ops.get((host, name)) if name else None
            if rec is not None:
                i = model.next_fault(rec.script.faults, rec.faults_used, method)
                if i is not None:
                    rec.faults_used[i] += 1
                    self.faults_injected += 1
                    fault = rec.script.faults[i]
                    return Decision(latency, fault.kind or str(fault.status), fault.retry_after_s,
                                    self._timeout_sleep(cfg))
            if cfg.rate and self.rng.random() < cfg.rate:
                self.faults_injected += 1
                return Decision(latency, self.rng.choice(cfg.kinds), cfg.retry_after_s, self._timeout_sleep(cfg))
            return Decision(latency)

    @staticmethod
    def _timeout_sleep(cfg: GlobalFaults) -> float:
        return cfg.timeout_sleep_s if cfg.timeout_sleep_s is not None else cfg.timeout_s + 1.0

    def exists(self, host: str, name: str) -> bool:
        with self.lock:
            return (host, name) in self.ops

    def _live(self, host: str, name: str, now: float) -> OpRecord:
        rec = self.ops.get((host, name))
        if rec is None or model.is_expired(rec.script, rec.cancel_at, now, rec.expired):
            raise HttpError(404, f"Operation {name} not found.")
        return rec

    def get(self, host: str, name: str) -> dict:
        now = self.now()
        with self.lock:
            rec = self._live(host, name, now)
            script, cancel_at = rec.script, rec.cancel_at
        return model.render(script, cancel_at, now)

    def cancel(self, host: str, name: str) -> None:
        now = self.now()
        with self.lock:
            rec = self._live(host, name, now)
            if model.is_done(rec.script, rec.cancel_at, now):
                raise HttpError(400, f"Operation {name} has already finished.", status_name="FAILED_PRECONDITION")
            if rec.cancel_at is None:
                rec.cancel_at = now

    def list(self, host: str, parent: str, flt: model.Filter, page_size: int, after_seq: int) -> tuple[list, int | None]:
        now = self.now()
        with self.lock:
            candidates = [(r.seq, r.script, r.cancel_at, r.expired)
                          for r in self.by_parent.get((host, parent), ()) if r.seq > after_seq]
        page, last_seq = [], None
        for seq, script, cancel_at, expired in candidates:
            if model.is_expired(script, cancel_at, now, expired):
                continue
            op = model.render(script, cancel_at, now)
            if flt.matches(script, op):
                if len(page) == page_size:
                    return page, last_seq  # at least one more match: there is a next page
                page.append(op)
                last_seq = seq
        return page, None

    def record(self, entry: dict) -> None:
        with self.lock:
            self.log.append(entry)


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, seq = raw.split(":", 1)
        if prefix != "after":
            raise ValueError
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "Invalid page token.") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pollers reuse connections
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms each.
    disable_nagle_algorithm = True
    server: "SimulatorServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # ---- plumbing
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        path = unquote(url.path)
        self._status, self._fault = None, None
        self._method, self._path, self._recorded = method, path, False
        try:
            self.body = self._read_body()
            if path.startswith("/_sim/") or path == "/_sim":
                self._admin(method, path)
            else:
                self._google(method, path)
        except HttpError as exc:
            self._send(exc.status, exc.body(), exc.headers)
        finally:
            self._record()

    def _record(self) -> None:
        """Log a Google-shaped request once, before its response leaves (a client that has
        its answer must find it in the log), or at the end when no response is sent."""
        if self._recorded or self._path.startswith("/_sim"):
            return
        self._recorded = True
        method, path = self._method, self._path
        headers = {k.lower(): ("present" if k.lower() == "authorization" else v)
                   for k, v in self.headers.items()}
        self.state.record({"method": method, "path": path, "query": urlsplit(self.path).query,
                           "headers": headers, "status": self._status, "fault": self._fault})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413, "Request body too large.")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HttpError(400, "Request body is not valid JSON.") from None

    def _send(self, status: int, body: Any, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self._status = status
        self._record()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    @property
    def state(self) -> SimState:
        return self.server.state

    # ---- admin API
    def _admin(self, method: str, path: str) -> None:
        st = self.state
        route = (method, path.rstrip("/"))
        body = self._json_body() if method == "POST" else {}
        if route == ("POST", "/_sim/operations"):
            return self._send(201, self._create([body])[0])
        if route == ("POST", "/_sim/operations:batch"):
            ops = body.get("operations") if isinstance(body, dict) else None
            if not isinstance(ops, list):
                raise HttpError(400, "operations must be a list")
            return self._send(201, {"operations": self._create(ops)})
        if route == ("POST", "/_sim/operations/expire"):
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise HttpError(400, "name is required")
            if not st.expire(body["name"], body.get("host")):
                raise HttpError(404, f"Operation {body['name']} not found.")
            return self._send(200, {})
        if route == ("POST", "/_sim/faults"):
            try:
                st.set_faults(parse_global_faults(body))
            except ScriptError as exc:
                raise HttpError(400, str(exc)) from None
            return self._send(200, st.faults.as_json())
        if route == ("GET", "/_sim/faults"):
            return self._send(200, st.faults.as_json())
        if route == ("POST", "/_sim/clock"):
            advance = body.get("advance_s", 0) if isinstance(body, dict) else None
            if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
                raise HttpError(400, "advance_s must be a non-negative number")
            st.advance(float(advance))
            return self._send(200, self._clock())
        if route == ("GET", "/_sim/clock"):
            return self._send(200, self._clock())
        if route == ("GET", "/_sim/stats"):
            return self._send(200, st.stats())
        if route == ("GET", "/_sim/requests"):
            return self._send(200, {"requests": st.recent(self._int_param("limit", 100))})
        if route == ("POST", "/_sim/reset"):
            st.reset()
            return self._send(200, {})
        if route == ("GET", "/_sim/health"):
            return self._send(200, {"ok": True})
        raise HttpError(404, f"No admin route {method} {path}.")

    def _create(self, bodies: list) -> list[dict]:
        try:
            scripts = self.state.create(bodies)
        except ScriptError as exc:
            raise HttpError(400, str(exc)) from None
        return [{"name": s.name, "host": s.host, "url": s.url} for s in scripts]

    def _clock(self) -> dict:
        now = self.state.now()
        return {"now": model.rfc3339(now), "offset_s": self.state.offset_s}

    def _int_param(self, key: str, default: int) -> int:
        raw = self.query.get(key, [None])[0]
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except ValueError:
            raise HttpError(400, f"{key} must be an integer") from None

    # ---- Google-shaped API
    def _google(self, method: str, path: str) -> None:
        host, _, rest = path.lstrip("/").partition("/")
        if not model.HOST_RE.match(host):
            self.state.count("other", None)
            raise HttpError(404, f"The requested URL {path} was not found on this server.")
        action, name = self._route(method, host, rest)
        if action == "other":
            self.state.count("other", None)
            raise HttpError(404, f"The requested URL {path} was not found on this server.")
        self.state.count(action, name)
        decision = self.state.decide(host, name, action if action in ("get", "cancel") else "list")
        if decision.latency_s:
            time.sleep(decision.latency_s)
        if decision.kind:
            return self._inject(decision)
        if action == "get":
            return self._send(200, self.state.get(host, name))
        if action == "cancel":
            self.state.cancel(host, name)
            return self._send(200, {})
        return self._list(host, name)

    def _route(self, method: str, host: str, rest: str) -> tuple[str, str | None]:
        """(action, name or list parent): the API's published URL prefixes are tried
        longest first (v1, dns/v1, v1/operations …), and a name that is scripted wins."""
        candidates = [rest[len(p) + 1:] for p in model.url_prefixes(host, rest) if rest.startswith(p + "/")]
        candidates = [c for c in candidates if c]
        if method == "GET":
            for resource in candidates:
                if resource == "operations" or resource.endswith("/operations"):
                    return "list", resource[: -len("operations")].rstrip("/")
        suffix = ":cancel" if method == "POST" else ""
        names = [c[: len(c) - len(suffix)] for c in candidates if method in ("GET", "POST") and c.endswith(suffix)]
        names = [n for n in names if n and ":" not in n]
        if not names:
            return "other", None
        known = next((n for n in names if self.state.exists(host, n)), names[0])
        return ("cancel" if suffix else "get"), known

    def _list(self, host: str, parent: str) -> None:
        try:
            flt = model.parse_filter(self.query.get("filter", [""])[0])
        except ScriptError as exc:
            raise HttpError(400, str(exc)) from None
        page_size = self._int_param("pageSize", DEFAULT_PAGE_SIZE)
        if page_size < 0:
            raise HttpError(400, "pageSize must not be negative")
        page_size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = self.query.get("pageToken", [""])[0]
        after = _decode_token(token) if token else 0
        ops, last_seq = self.state.list(host, parent, flt, page_size, after)
        body: dict[str, Any] = {"operations": ops}
        if last_seq is not None:
            body["nextPageToken"] = _encode_token(last_seq)
        self._send(200, body)

    def _inject(self, decision: Decision) -> None:
        kind = self._fault = decision.kind
        if kind == "garbage":
            return self._send(200, None, raw=GARBAGE_BODY)
        if kind == "reset":
            self._abort_connection()
            return
        if kind == "timeout":
            self.state.wake.wait(decision.sleep_s)
            raise HttpError(504, "Deadline exceeded.")
        status = int(kind)
        headers = {}
        if status == 429 and decision.retry_after_s is not None:
            headers["Retry-After"] = str(int(decision.retry_after_s) if float(decision.retry_after_s).is_integer()
                                         else decision.retry_after_s)
        messages = {429: "Quota exceeded.", 503: "The service is currently unavailable."}
        raise HttpError(status, messages.get(status, "Injected fault."), headers)

    def _abort_connection(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST instead of an orderly FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.server.mark_for_abort(self.connection)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512  # benchmark clients open many connections at once

    def __init__(self, address: tuple[str, int], state: SimState | None = None):
        super().__init__(address, Handler)
        self.state = state or SimState()
        self._abort: set[int] = set()
        self._abort_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def mark_for_abort(self, sock: socket.socket) -> None:
        with self._abort_lock:
            self._abort.add(id(sock))

    def shutdown_request(self, request: socket.socket) -> None:
        with self._abort_lock:
            abort = id(request) in self._abort
            self._abort.discard(id(request))
        if abort:
            self.close_request(request)  # no SHUT_WR first: the peer must see RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (timeouts, resets) are expected here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def stop(self) -> None:
        self.state.wake.set()
        self.shutdown()
        self.server_close()


def make_server(host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    return SimulatorServer((host, port))


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[SimulatorServer, str]:
    """Serve in a daemon thread; call `server.stop()` when done."""
    server = make_server(host, port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     name="lro-simulator", daemon=True).start()
    return server, server.base_url
