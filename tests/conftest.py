"""Shared fixtures. All are lazy: only tests that ask for emulators or the
simulator start them, so tests/unit stays free of processes."""
from __future__ import annotations

import importlib
import importlib.util
import uuid
from pathlib import Path

import hypothesis
import pytest

TESTS_DIR = Path(__file__).resolve().parent

# Two test workers share the machine's cores, so generating an example can be slow through no
# fault of the strategy, and a timed example says nothing about correctness: neither fails a test.
hypothesis.settings.register_profile(
    "lrowatch", suppress_health_check=[hypothesis.HealthCheck.too_slow], deadline=None)
hypothesis.settings.load_profile("lrowatch")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: uses the emulators or the simulator (seconds)")
    config.addinivalue_line("markers", "e2e: runs the functions as processes against the emulators (slower)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark by folder, so `-m "not e2e"` works without every test remembering its marker.
    for item in items:
        try:
            folder = Path(str(item.path)).resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if folder in ("integration", "e2e"):
            item.add_marker(folder)


def _running_emulators():
    """Both emulators, named in os.environ while they run (the previous values come back after)."""
    from functions.local.emulators import Emulators

    with Emulators() as running, pytest.MonkeyPatch.context() as patch:
        for key, value in running.env().items():
            patch.setenv(key, value)
        yield running


@pytest.fixture(scope="session")
def emulators():
    """Both emulators, once per session."""
    yield from _running_emulators()


@pytest.fixture(scope="module")
def own_emulators():
    """Emulators of a module's own, stopped at its end, for modules that track thousands of
    operations: the Pub/Sub emulator keeps a thread per ordering key it has ever seen (its
    OrderedMessageBacklog.close() does nothing), each waking every second, which would load
    every later test. A module opts in by overriding `emulators` with this."""
    yield from _running_emulators()


@pytest.fixture
def project_id() -> str:
    """A project per test: the emulators keep each project's data apart."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(project_id):
    from functions.config import Settings

    return Settings(project=project_id)


@pytest.fixture(scope="session")
def simulator():
    """The Operations API simulator, in-process; `.base_url` is where to reach it."""
    from functions.simulator.server import start_in_thread

    server, _base_url = start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim(simulator):
    """The session simulator, reset to empty, and its admin client."""
    from functions.simulator.client import SimulatorAdmin

    admin = SimulatorAdmin(simulator.base_url)
    admin.reset()
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def hostile(simulator):
    """A hostile Operations API in front of the simulator (tests/integration/hostile.py)."""
    from tests.integration.hostile import HostileApi

    api = HostileApi(simulator.base_url)
    yield api
    api.close()
