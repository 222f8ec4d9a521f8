"""SimulatorAdmin: a thin helper over the simulator's /_sim admin API."""
from __future__ import annotations

from typing import Any

import requests


class SimulatorError(RuntimeError):
    def __init__(self, status: int, body: Any):
        super().__init__(f"simulator answered {status}: {body}")
        self.status, self.body = status, body


class SimulatorAdmin:
    def __init__(self, base_url: str, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()

    # ---- operations
    def create(self, **script: Any) -> dict:
        """Script one operation; returns {"name", "host", "url"}."""
        return self._call("POST", "/_sim/operations", script)

    def create_many(self, scripts: list[dict]) -> list[dict]:
        return self._call("POST", "/_sim/operations:batch", {"operations": scripts})["operations"]

    def expire(self, name: str, host: str | None = None) -> None:
        body = {"name": name} if host is None else {"name": name, "host": host}
        self._call("POST", "/_sim/operations/expire", body)

    def op_url(self, op: dict) -> str:
        """Where a request for `op["url"]` (https://HOST/v1/NAME) lands on the simulator."""
        return self.base_url + "/" + op["url"].removeprefix("https://")

    # ---- environment
    def set_faults(self, **faults: Any) -> dict:
        return self._call("POST", "/_sim/faults", faults)

    def clear_faults(self) -> dict:
        return self._call("POST", "/_sim/faults", {"rate": 0})

    def advance(self, seconds: float) -> dict:
        return self._call("POST", "/_sim/clock", {"advance_s": seconds})

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", {})

    # ---- observation
    def stats(self) -> dict:
        return self._call("GET", "/_sim/stats")

    def requests(self, limit: int = 100) -> list[dict]:
        return self._call("GET", f"/_sim/requests?limit={limit}")["requests"]

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/_sim/health").get("ok") is True
        except (requests.RequestException, SimulatorError):
            return False

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._session.request(method, self.base_url + path, json=body,
                                     timeout=self.timeout_s, allow_redirects=False)
        data = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise SimulatorError(resp.status_code, data)
        return data
