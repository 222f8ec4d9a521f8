"""The HTTP surface of `submit` (contract §4), seen from the CLI.

Every failure becomes a CliError with the exit code it means and a hint.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from functions.cli import target as targets
from functions.cli.errors import ApiError, NotFoundError, Unreachable
from functions.cli.target import Target

TIMEOUT_S = 30.0

_HINTS = {
    400: "check the arguments against `lrowatch COMMAND --help` and the README's contract",
    404: "`lrowatch list` shows the tracked operations",
    413: "the request body is limited to 64 KiB",
    415: "the body must be JSON",
}


class Client:
    def __init__(self, target: Target, session: requests.Session | None = None):
        self.target = target
        self._session = session or requests.Session()
        self._session.trust_env = target.needs_token  # no proxies for the local demo
        self._tokens = targets.IdTokens(target.audience) if target.needs_token else None

    def submit(self, body: dict) -> tuple[dict, bool]:
        """(record, created): 201 for a new record, 200 for one already tracked."""
        response = self._call("POST", "/operations", json=body)
        return response.json(), response.status_code == 201

    def get(self, operation_id: str) -> dict:
        return self._call("GET", f"/operations/{quote(operation_id, safe='')}").json()

    def list(self, params: dict[str, str]) -> dict:
        return self._call("GET", "/operations", params=params).json()

    def items(self, operation_id: str, params: dict[str, str]) -> dict:
        return self._call("GET", f"/operations/{quote(operation_id, safe='')}/items", params=params).json()

    def cancel(self, operation_id: str, body: dict) -> dict:
        return self._call("POST", f"/operations/{quote(operation_id, safe='')}:cancel", json=body).json()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self._tokens:
            # Revoked or expired early (clock skew): one more try with a fresh token.
            self._tokens.invalidate()
            response = self._send(method, path, **kwargs)
        if response.status_code >= 300:
            raise _error(response)
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.target.submit_url + path
        headers = {}
        if self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens.get()}"
        try:
            response = self._session.request(method, url, headers=headers, timeout=TIMEOUT_S,
                                             allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            hint = ("is `make demo` still running? start it with `make demo`" if self.target.local
                    else "check the URL and your network")
            raise Unreachable(f"cannot reach {self.target.submit_url}: {type(exc).__name__}", hint) from exc
        return response


def _error(response: requests.Response) -> Exception:
    status = response.status_code
    try:
        body = response.json()
        error = body.get("error") or {}
        message = f"{error.get('status') or status}: {error.get('message') or response.reason}"
    except (ValueError, AttributeError):
        body, message = None, f"HTTP {status} {response.reason}"
    if status in (401, 403):
        return Unreachable(message, "your identity was refused: you need permission to invoke the submit "
                                    "function (roles/run.invoker); check `gcloud auth list`",
                           status=status, body=body)
    if status == 404:
        return NotFoundError(message, _HINTS[404], status=status, body=body)
    if status >= 500 or status in (300, 301, 302, 303, 307, 308, 429):
        return Unreachable(message, "the service is unavailable or overloaded; retry in a little while",
                           status=status, body=body)
    return ApiError(message, _HINTS.get(status), status=status, body=body)
