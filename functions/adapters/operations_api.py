"""REST client of google.longrunning.Operations: GET, list and :cancel.

Requests only ever go to an OperationRef's endpoint, a host built by
functions.domain.names; redirects are never followed, so a token can't be
carried elsewhere. With LRO_API_BASE_URL set (local/testing), requests go to
`BASE/HOST/PATH` with no credentials at all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from functions.adapters.lazy import Lazy
from functions.domain.errors import ApiUnavailable
from functions.domain.names import OperationRef
from functions.domain.tracking import ApiFailure

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_GOOGLE_HOST = re.compile(r"^[a-z0-9-]+\.googleapis\.com$")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


@dataclass(frozen=True)
class CancelResult:
    """The API's answer to :cancel (contract §7 outcome vocabulary)."""

    outcome: str  # "sent" | "already_finished" | "not_found" | "refused"
    api_status: dict


class OperationsApi:
    def __init__(self, base_url: str | None = None, *, pool_size: int = 32, timeout_s: float = 10.0,
                 session_factory: Callable[[], requests.Session] | None = None):
        self._base_url = base_url.rstrip("/") if base_url else None
        self._timeout = timeout_s
        self._pool_size = pool_size
        self._session: Lazy[requests.Session] = Lazy(session_factory or self._default_session)

    # Session ---------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        return self._session.get()

    def _default_session(self) -> requests.Session:
        if self._base_url:  # local/testing: wiring logs the start-up WARNING once
            session = requests.Session()
        else:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=SCOPES)
            # One refresh on 401, then the 401 stands (classified permanent).
            session = AuthorizedSession(credentials, max_refresh_attempts=1)
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=self._pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.trust_env = False  # no proxy or .netrc credentials from the environment
        return session

    def url_for(self, ref: OperationRef, suffix: str = "") -> str:
        if not _GOOGLE_HOST.match(ref.endpoint):  # defence in depth: refs are built, not parsed
            raise ValueError(f"refusing non-Google host {ref.endpoint!r}")
        path = f"{ref.endpoint}/{ref.api_version}/{ref.name}{suffix}"
        return f"{self._base_url}/{path}" if self._base_url else f"https://{path}"

    def _request(self, method: str, url: str, quota_project: str | None, **kwargs) -> requests.Response:
        headers = {"x-goog-user-project": quota_project} if quota_project else {}
        return self.session.request(method, url, headers=headers, timeout=self._timeout,
                                    allow_redirects=False, **kwargs)

    # Calls -----------------------------------------------------------------
    def get(self, ref: OperationRef, quota_project: str | None = None) -> dict | ApiFailure:
        """The Operation JSON, or an ApiFailure saying how to treat the failure."""
        try:
            response = self._request("GET", self.url_for(ref), quota_project)
        except requests.RequestException as exc:
            return ApiFailure("transient", {"code": 503, "status": "UNAVAILABLE",
                                            "message": f"{type(exc).__name__}: {str(exc)[:300]}"})
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                return body
            return ApiFailure("transient", {"code": 200, "status": "UNAVAILABLE",
                                            "message": "malformed operation body"})
        return classify_failure(response)

    def cancel(self, ref: OperationRef, quota_project: str | None = None) -> CancelResult:
        """POST :cancel once; raises ApiUnavailable when the answer is worth retrying."""
        try:
            response = self._request("POST", self.url_for(ref, ":cancel"), quota_project, json={})
        except requests.RequestException as exc:
            raise ApiUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        status = google_status(response)
        if response.status_code == 200:
            return CancelResult("sent", status)
        if response.status_code in TRANSIENT_HTTP:
            raise ApiUnavailable(status.get("message", ""))
        if response.status_code == 404:
            return CancelResult("not_found", status)
        if status.get("status") == "FAILED_PRECONDITION":
            return CancelResult("already_finished", status)
        return CancelResult("refused", status)

    def list(self, endpoint_ref: OperationRef, parent: str, filter_: str = "", page_size: int = 100,
             page_token: str = "") -> tuple[list[dict], str]:
        """One page of `GET {parent}/operations`; endpoint_ref supplies host and version."""
        ref = OperationRef(f"{parent}/operations", endpoint_ref.service, endpoint_ref.api_version,
                           endpoint_ref.endpoint)
        params = {"pageSize": page_size}
        if filter_:
            params["filter"] = filter_
        if page_token:
            params["pageToken"] = page_token
        response = self._request("GET", self.url_for(ref), None, params=params)
        if response.status_code != 200:
            raise ApiUnavailable(google_status(response).get("message", "list failed"))
        body = response.json()
        return list(body.get("operations") or []), body.get("nextPageToken") or ""


def google_status(response: requests.Response) -> dict:
    """Google's error body → {"code", "status", "message"}; tolerant of garbage."""
    status = {"code": response.status_code, "status": "", "message": ""}
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict):
        status["status"] = str(error.get("status", ""))[:100]
        status["message"] = str(error.get("message", ""))[:1000]
        if isinstance(error.get("details"), list):
            status["details"] = error["details"][:10]
    if not status["message"]:
        status["message"] = f"HTTP {response.status_code}"
    return status


def classify_failure(response: requests.Response) -> ApiFailure:
    status = google_status(response)
    code = response.status_code
    if code in TRANSIENT_HTTP:
        return ApiFailure("transient", status, retry_after_s=_retry_after(response))
    if code == 404:
        return ApiFailure("not_found", status)
    return ApiFailure("permanent", status)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
