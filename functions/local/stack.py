"""The whole of lrowatch on one machine: emulators, simulator, four functions, topology.

    with LocalStack() as stack:
        requests.post(stack.urls["submit"], json={...})
        stack.poll(budget_s=5)

Everything boots side by side: ports are chosen up front so each process's
environment is known before any of them is ready (main.py must therefore not
call the network at import time — good practice on Cloud Functions anyway).
"""
from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping

from functions.local.emulators import Emulators
from functions.local.processes import (
    ManagedProcess,
    child_env,
    free_port,
    function_process,
    simulator_process,
    start_all,
    stop_all,
)
from functions.local.topology import Topology

FUNCTIONS = ("submit", "submit_pubsub", "poll", "handle")


class LocalStack:
    def __init__(
        self,
        project: str | None = None,
        *,
        emulator_env: Mapping[str, str] | None = None,
        simulator_url: str | None = None,
        start_simulator: bool = True,
        source: Path | str | None = None,
        extra_env: Mapping[str, str | None] | None = None,
        run_dir: Path | str | None = None,
        timeout: float = 60.0,
    ) -> None:
        """
        project: GOOGLE_CLOUD_PROJECT (default: a fresh `local-<hex>`, so data is isolated).
        emulator_env: reuse running emulators ({"FIRESTORE_EMULATOR_HOST": ..., "PUBSUB_EMULATOR_HOST": ...});
            without it the stack starts and stops its own.
        simulator_url: reuse a running simulator; else one is started unless start_simulator is False
            (then LRO_API_BASE_URL is left as in extra_env/os.environ).
        source: the functions' source file (default: the repository's main.py).
        extra_env: more variables for the functions (e.g. LRO_NOTIFY_URL_PREFIXES); None removes one.
        """
        self.project = project or f"local-{uuid.uuid4().hex[:12]}"
        self.run_dir = run_dir
        self.timeout = timeout
        self.emulators = None if emulator_env else Emulators(run_dir=run_dir, timeout=timeout)
        emulator_env = dict(emulator_env or self.emulators.env())

        self.simulator = None
        if simulator_url is None and start_simulator:
            self.simulator = simulator_process(port=free_port(), run_dir=run_dir)
            simulator_url = self.simulator.url

        self.env: dict[str, str | None] = {"GOOGLE_CLOUD_PROJECT": self.project, **emulator_env}
        if simulator_url:
            self.env["LRO_API_BASE_URL"] = simulator_url
        self.env.update(extra_env or {})

        self.functions: dict[str, ManagedProcess] = {
            name: function_process(name, source=source, env=self.env, run_dir=run_dir) for name in FUNCTIONS
        }
        self.urls: dict[str, str] = {name: process.url for name, process in self.functions.items()}
        if simulator_url:
            self.urls["simulator"] = simulator_url
        self.settings = _settings(child_env(self.env))  # what the functions themselves will read
        self.topology: Topology | None = None
        self.subscriptions: dict[str, str] = {}

    @property
    def processes(self) -> list[ManagedProcess]:
        own = (self.emulators.processes if self.emulators else []) + ([self.simulator] if self.simulator else [])
        return own + list(self.functions.values())

    def start(self) -> "LocalStack":
        # Emulators first in the list: they take longest, and readiness is waited for in order.
        start_all(self.processes, self.timeout)
        try:
            self.topology = Topology(self.settings, emulator_host=self.env["PUBSUB_EMULATOR_HOST"])
            self.subscriptions = self.topology.build(self.urls)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.topology:
            self.topology.close()
            self.topology = None
        stop_all(self.processes)

    def poll(self, budget_s: float = 5.0, timeout: float | None = None) -> dict[str, Any]:
        """One poll run, as Cloud Scheduler would trigger it; returns the run's JSON summary."""
        return post_json(self.urls["poll"], {"budget_s": budget_s}, timeout=timeout or budget_s + 30)

    def log_tails(self, lines: int = 20) -> str:
        """The end of every process's log, for a failing test's message."""
        return "\n\n".join(f"== {p.name} ({p.log_path})\n{p.log_tail(lines)}" for p in self.processes)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def post_json(url: str, body: Any, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _settings(env: Mapping[str, str]):
    from functions.config import Settings  # lazily: keeps this module light to import

    return Settings.from_env(env)
