"""Fixtures shared by the end-to-end modules: one local stack per module, its simulator,
and the demo file the CLI's `--local` reads."""
from __future__ import annotations

import json

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


@pytest.fixture(scope="module")
def demo_file(stack, tmp_path_factory):
    """What `make demo` writes while it runs; the CLI's --local reads it
    (use with `pytestmark = pytest.mark.usefixtures("demo_file")`)."""
    path = tmp_path_factory.mktemp("demo") / "demo.json"
    path.write_text(json.dumps({"project": stack.project, **stack.urls, "env": stack.env}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LROWATCH_DEMO_FILE", str(path))
        patch.delenv("LROWATCH_URL", raising=False)
        yield path
