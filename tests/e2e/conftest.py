"""Fixtures shared by the end-to-end modules: one local stack per module, and its simulator."""
from __future__ import annotations

import pytest

from functions.local.stack import LocalStack
from functions.simulator.client import SimulatorAdmin


@pytest.fixture(scope="module")
def stack(emulators, tmp_path_factory):
    """The whole of lrowatch as processes (simulator, four functions) on the session's emulators."""
    with LocalStack(emulator_env=emulators.env(), run_dir=tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def sim(stack):
    """The stack's simulator admin client."""
    admin = SimulatorAdmin(stack.urls["simulator"])
    yield admin
    admin.close()
