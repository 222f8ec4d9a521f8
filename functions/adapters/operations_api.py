"""REST client of google.longrunning.Operations: GET, list and :cancel.

Requests only ever go to an OperationRef's endpoint, a host built by
functions.domain.names; redirects are never followed, so a token can't be
carried elsewhere. With LRO_API_BASE_URL set (local/testing), requests go to
`BASE/HOST/PATH` with no credentials at all.

Requests go through urllib3 directly, not requests: requests' per-call
preparation (settings merges, cookies, hooks) cost more CPU than the GET's
own I/O, and a poll run makes hundreds of GETs a second. With credentials,
google.auth's AuthorizedHttp adds the token (refreshed once on a 401).

Nothing an answer does escapes the one call it answers: the body is streamed
within a byte cap and one overall timeout, parsed with bounded nesting and
shape-checked, and any exception in building, sending or reading a request
becomes that call's classified failure (transient: retried; permanent: counts
towards FAILED).
"""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

import urllib3
from urllib3 import exceptions as u3exc
from urllib3.util import Retry, parse_url

from functions.adapters.lazy import Lazy
from functions.domain import jsontext
from functions.domain.answers import operation_problem
from functions.domain.errors import ApiUnavailable
from functions.domain.names import OperationRef
from functions.domain.record import bounded_status
from functions.domain.tracking import ApiFailure

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
# Global, LOCATION-HOST and HOST.LOCATION.rep hosts: labels of letters, digits and hyphens.
_GOOGLE_HOST = re.compile(r"^(?:[a-z0-9-]{1,63}\.){1,3}googleapis\.com$")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# Answers are read in chunks up to this many bytes: an Operation is rarely more than a few KB.
MAX_ANSWER_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# Request errors that mean the request can never be built or sent, whatever the network does.
_UNBUILDABLE = (u3exc.LocationValueError, u3exc.InvalidHeader)
# No retries, no redirects: what urllib3 makes of retries=False, redirect=False, built once, not per request.
_NO_RETRIES = Retry(False, redirect=False)
# The characters of a path that urllib3's URL parsing leaves as it is (see plain_path).
_PLAIN_PATH_CHARS = "/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~!$&'()*+,;=:@-"


@dataclass(frozen=True)
class CancelResult:
    """The API's answer to :cancel (contract §7 outcome vocabulary)."""

    outcome: str  # "sent" | "already_finished" | "not_found" | "refused" ("unsupported" is decided before any call)
    api_status: dict


class OperationsApi:
    def __init__(self, base_url: str | None = None, *, pool_size: int = 32, timeout_s: float = 10.0,
                 max_answer_bytes: int = MAX_ANSWER_BYTES, http_factory: Callable[[], Any] | None = None):
        """http_factory: what sends requests (urllib3's `urlopen` interface); a pool by default."""
        self._base_url = base_url.rstrip("/") if base_url else None
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self._timeout_s = timeout_s
        self._max_bytes = max_answer_bytes
        self._pool_size = pool_size
        self._http: Lazy[Any] = Lazy(http_factory or self._default_http)
        self._gets: Lazy[Any] = Lazy(self._async_gets)
        self._credentials: Lazy[Any] = Lazy(_credentials)  # one token for both ways of calling

    # Connections -------------------------------------------------------------
    @property
    def http(self):
        return self._http.get()

    def _default_http(self):
        import certifi

        # No retries and no redirects at the pool either; no proxy settings are read from the environment.
        pool = HostPools(num_pools=8, maxsize=self._pool_size, retries=_NO_RETRIES,
                         cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
        if self._base_url:  # local/testing: no credentials (wiring logs the start-up WARNING once)
            return pool
        from google.auth.transport.urllib3 import AuthorizedHttp

        # One refresh on 401, then the 401 stands (classified permanent).
        return AuthorizedHttp(self._credentials.get(), http=pool, max_refresh_attempts=1)

    def url_for(self, ref: OperationRef, suffix: str = "") -> str:
        if not _GOOGLE_HOST.match(ref.endpoint):  # defence in depth: refs are built, not parsed
            raise ValueError(f"refusing non-Google host {ref.endpoint!r}")
        path = f"{ref.endpoint}/{ref.path}{suffix}"
        return f"{self._base_url}/{path}" if self._base_url else f"https://{path}"

    def _request(self, method: str, url: str, quota_project: str | None, body: Any = None):
        headers = {"x-goog-user-project": quota_project} if quota_project else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return self.http.urlopen(method, url, body=data, headers=headers, timeout=self._timeout,
                                 redirect=False, retries=_NO_RETRIES, preload_content=False)

    def _call(self, method: str, ref: OperationRef, quota_project: str | None, suffix: str = "",
              params: dict | None = None, body: Any = None) -> "_Answer":
        """Building, sending and reading the request are one step: whatever goes wrong
        in it raises AnswerError, classified."""
        try:
            url = self.url_for(ref, suffix) + (f"?{urlencode(params)}" if params else "")
            response = self._request(method, url, quota_project, body)
            try:
                raw = self._read(response)
            except BaseException:
                response.close()  # a connection with an answer half read is never reused
                raise
            finally:
                response.release_conn()
        except AnswerError:
            raise
        except Exception as exc:  # urllib3's LocationParseError, for one, is no RequestException
            raise answer_error(exc) from exc
        return parse_answer(response.status, raw, response.headers)

    def _read(self, response) -> bytes:
        """The body, streamed (and decompressed), within max_answer_bytes and one timeout overall."""
        body = CappedBody(response.status, response.headers, self._max_bytes, self._timeout_s)
        for chunk in response.stream(CHUNK_BYTES):
            body.add(chunk)
        return body.whole()

    # Calls -----------------------------------------------------------------
    def get(self, ref: OperationRef, quota_project: str | None = None) -> dict | ApiFailure:
        """The Operation JSON, or an ApiFailure saying how to treat the failure. Never raises:
        whatever goes wrong is this operation's failure."""
        try:
            answer = self._call("GET", ref, quota_project)
        except AnswerError as exc:
            return exc.failure()
        return operation_or_failure(answer, ref)

    def start_gets(self, requests: list[tuple[OperationRef, str | None]]) -> list[Future]:
        """get() of each (ref, quota project), started on the event loop that carries the poll
        runs' GETs (AsyncGets): Futures of the same answers, many in flight without a thread each."""
        return self._gets.get().start(requests)

    def _async_gets(self):
        from functions.adapters.async_gets import AsyncGets

        return AsyncGets(self.url_for, pool_size=self._pool_size, timeout_s=self._timeout_s,
                         max_answer_bytes=self._max_bytes,
                         credentials=None if self._base_url else self._credentials.get)

    def cancel(self, ref: OperationRef, quota_project: str | None = None) -> CancelResult:
        """POST :cancel once; raises ApiUnavailable when the answer is worth retrying."""
        try:
            answer = self._call("POST", ref, quota_project, ":cancel", body={})
        except AnswerError as exc:
            if exc.kind == "transient":
                raise ApiUnavailable(exc.message) from exc
            return CancelResult("refused", exc.failure().status)  # can never be sent
        code, status = answer.code, google_status(answer.code, answer.body)
        if code == 200:
            return CancelResult("sent", status)
        if code in TRANSIENT_HTTP:
            raise ApiUnavailable(status.get("message", ""))
        if code == 404:
            return CancelResult("not_found", status)
        if status.get("status") == "FAILED_PRECONDITION":
            return CancelResult("already_finished", status)
        return CancelResult("refused", status)

    def list(self, endpoint_ref: OperationRef, parent: str, filter_: str = "", page_size: int = 100,
             page_token: str = "") -> tuple[list[dict], str]:
        """One page of `GET {parent}/operations`; endpoint_ref supplies host and version.
        Raises ApiUnavailable for any failure: the scope is listed again next run."""
        ref = OperationRef(f"{parent}/operations", endpoint_ref.service, endpoint_ref.api_version,
                           endpoint_ref.endpoint, prefix=endpoint_ref.prefix or endpoint_ref.api_version)
        params = {"pageSize": page_size}
        if filter_:
            params["filter"] = filter_
        if page_token:
            params["pageToken"] = page_token
        try:
            answer = self._call("GET", ref, None, params=params)
        except AnswerError as exc:
            raise ApiUnavailable(exc.message) from exc
        body = answer.body
        if answer.code != 200 or answer.unusable:
            raise ApiUnavailable(answer.unusable or google_status(answer.code, body).get("message", "list failed"))
        operations = body.get("operations") if isinstance(body, dict) else None
        token = body.get("nextPageToken") if isinstance(body, dict) else None
        if (not isinstance(body, dict) or not isinstance(operations, (list, type(None)))
                or not isinstance(token, (str, type(None)))):
            raise ApiUnavailable("the listing is not a ListOperationsResponse")
        return [op for op in operations or [] if isinstance(op, dict)], token or ""


def _credentials():
    import google.auth

    credentials, _ = google.auth.default(scopes=SCOPES)
    return credentials


class CappedBody:
    """An answer's body as it streams in, both ways of calling: refused (AnswerError) past
    `max_bytes`, declared or read, or past one deadline for the whole body (a trickle of bytes
    defeats a per-read timeout)."""

    def __init__(self, status: int, headers: Mapping[str, str], max_bytes: int, timeout_s: float):
        self._status, self._max_bytes, self._timeout_s = status, max_bytes, timeout_s
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise self._too_large()
        self._deadline = time.monotonic() + timeout_s
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise self._too_large()
        if time.monotonic() > self._deadline:
            raise AnswerError("transient", 504, f"the answer took longer than {self._timeout_s:g} s")
        self._chunks.append(chunk)

    def whole(self) -> bytes:
        return b"".join(self._chunks)

    def _too_large(self) -> "AnswerError":
        return AnswerError("permanent", self._status, f"the answer is larger than {self._max_bytes} bytes")


def answer_error(exc: Exception) -> "AnswerError":
    """What building, sending or reading a request raised, as that call's classified failure."""
    kind = _kind_of(exc)
    return AnswerError(kind, 503 if kind == "transient" else 400, f"{type(exc).__name__}: {str(exc)[:300]}")


def parse_answer(code: int, raw: bytes, headers: Mapping[str, str]) -> "_Answer":
    """A whole answer read within the byte cap: its JSON parsed with bounded nesting."""
    try:
        return _Answer(code, jsontext.loads(raw) if raw.strip() else None, headers)
    except jsontext.JsonTooDeep as exc:
        return _Answer(code, None, headers, f"the answer is {exc}", "permanent")
    except ValueError as exc:  # cut short in transit, or a proxy's page: worth another try
        return _Answer(code, None, headers, f"the answer is not usable JSON: {str(exc)[:200]}", "transient")


def operation_or_failure(answer: "_Answer", ref: OperationRef) -> dict | ApiFailure:
    """A GET's answer: the Operation JSON when it is one (of this operation), else the failure."""
    if answer.code != 200:
        return classify_failure(answer.code, answer.body, answer.headers)
    if answer.unusable:
        return AnswerError(answer.unusable_kind, answer.code, answer.unusable).failure()
    problem = operation_problem(answer.body, ref.name)
    if problem:
        return AnswerError("permanent", answer.code, problem).failure()
    return answer.body


def plain_path(path: str) -> bool:
    """Whether urllib3's URL parsing leaves this path as it is: no query or fragment, nothing to
    percent-encode, no percent-escape to normalise, no segment starting with a dot ("." and
    ".." are removed; other dot segments are left to urllib3 too). Two scans in C, no regex."""
    return path[:1] == "/" and not path.strip(_PLAIN_PATH_CHARS) and "/." not in path


class HostPools(urllib3.PoolManager):
    """urllib3's PoolManager, finding a request's connection pool by the URL's scheme and host.

    Why: PoolManager.urlopen parses the whole URL and builds a pool key for every request,
    which cost a third of a GET's own CPU. Here a URL whose path parsing would leave as it is
    (plain_path: every URL url_for builds) goes straight to its host's pool, with the same
    arguments PoolManager passes; anything else, and any request that may follow a redirect,
    takes PoolManager's own way. It remembers as many pools as PoolManager keeps (num_pools).
    """

    def __init__(self, num_pools: int = 10, **kwargs):
        super().__init__(num_pools, **kwargs)
        self._by_origin: dict[str, Any] = {}
        self._origins_max = num_pools

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any):
        scheme_end = url.find("://")
        path_at = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        if redirect or path_at < 0 or not plain_path(url[path_at:]):
            return super().urlopen(method, url, redirect=redirect, **kw)
        origin = url[:path_at]
        pool = self._by_origin.get(origin)
        if pool is None or pool.pool is None:  # not seen yet, or closed: PoolManager keeps num_pools
            parts = parse_url(origin)
            pool = self.connection_from_host(parts.host, port=parts.port, scheme=parts.scheme)
            if len(self._by_origin) >= self._origins_max:
                self._by_origin.clear()
            self._by_origin[origin] = pool
        kw.setdefault("headers", self.headers)
        try:
            return pool.urlopen(method, url[path_at:], assert_same_host=False, redirect=False, **kw)
        except u3exc.ClosedPoolError:  # closed in between (nothing was sent): PoolManager's own way
            self._by_origin.pop(origin, None)
            return super().urlopen(method, url, redirect=False, **kw)


@dataclass(frozen=True)
class _Answer:
    """What came back: status, parsed body (None if empty or unusable), and why unusable."""

    code: int
    body: Any
    headers: Mapping[str, str]
    unusable: str | None = None
    unusable_kind: str = "transient"


class AnswerError(Exception):
    """A request that yielded no usable answer: transient or permanent, with a status."""

    def __init__(self, kind: str, code: int, message: str):
        super().__init__(message)
        self.kind, self.code, self.message = kind, code, message

    def failure(self) -> ApiFailure:
        status = "UNAVAILABLE" if self.kind == "transient" else "UNKNOWN"
        return ApiFailure(self.kind, {"code": self.code, "status": status, "message": self.message})


def _kind_of(exc: Exception) -> str:
    """Network trouble and our own credentials' trouble pass; a request that can't be built never will."""
    if isinstance(exc, (u3exc.HTTPError, ConnectionError, TimeoutError)) and not isinstance(exc, _UNBUILDABLE):
        return "transient"
    if type(exc).__module__.startswith("aiohttp") and not isinstance(exc, ValueError):
        return "transient"  # aiohttp's connection, payload and server errors (its InvalidURL is a ValueError)
    if type(exc).__module__.startswith("google.auth"):
        return "transient"
    return "permanent"


def google_status(code: int, body: Any) -> dict:
    """Google's error body → {"code", "status", "message"}; tolerant of garbage."""
    status = {"code": code, "status": "", "message": ""}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        status["status"] = str(error.get("status", ""))[:100]
        status["message"] = str(error.get("message", ""))[:1000]
        if isinstance(error.get("details"), list):
            status = bounded_status({**status, "details": error["details"]})[0]
    if not status["message"]:
        status["message"] = f"HTTP {code}"
    return status


def classify_failure(code: int, body: Any, headers) -> ApiFailure:
    status = google_status(code, body)
    if code in TRANSIENT_HTTP:
        return ApiFailure("transient", status, retry_after_s=_retry_after(headers))
    if code == 404:
        return ApiFailure("not_found", status)
    return ApiFailure("permanent", status)


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
