"""The demo's scenario as an end-to-end test: functions as processes, Pub/Sub push, real emulators."""
from __future__ import annotations

import io

import psutil

from functions.local.demo import Demo
from functions.local.stack import LocalStack


def test_the_demo_mix_reaches_its_expected_states_with_one_event_per_change_and_stops_cleanly():
    out = io.StringIO()
    with LocalStack() as stack:
        pids = [p.pid for p in stack.processes]
        ok = Demo(stack, out=out).run()
    assert ok, out.getvalue()[-3000:]
    assert "demo OK" in out.getvalue()
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
