"""ManagedProcess: the one start/wait/stop used by every local child process."""
from __future__ import annotations

import sys
import textwrap

import psutil
import pytest

from functions.local.processes import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    log_line_probe,
    simulator_process,
    tcp_probe,
)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_process_that_dies_before_ready_fails_with_its_log_tail(tmp_path):
    process = ManagedProcess("dies", _python("print('boom: bad config'); raise SystemExit(3)"),
                             probe=lambda _: False, run_dir=tmp_path)

    with pytest.raises(ProcessFailed, match="(?s)exited with code 3.*boom: bad config"):
        with process:
            pass


def test_a_process_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    process = ManagedProcess("sleeper", _python("import time; time.sleep(60)"),
                             probe=lambda _: False, run_dir=tmp_path)
    process.start()

    with pytest.raises(ProcessFailed, match="not ready after"):
        process.wait_ready(timeout=0.5)
    process.stop()
    assert not psutil.pid_exists(process.pid)


def test_stop_also_ends_grandchildren_in_the_process_group(tmp_path):
    port = free_port()
    code = f"""
        import socket, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("CHILD", child.pid, flush=True)
        server = socket.socket(); server.bind(("127.0.0.1", {port})); server.listen()
        time.sleep(60)
    """
    with ManagedProcess("parent", _python(code), probe=tcp_probe(port), run_dir=tmp_path) as process:
        grandchild = psutil.Process(int(process.log_text().split("CHILD ")[1].split()[0]))
        assert grandchild.is_running()

    # The group was signalled; the grandchild's exit (and reaping by init) is asynchronous.
    _, alive = psutil.wait_procs([grandchild], timeout=5)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def test_the_simulator_url_is_the_one_announced_on_its_ready_line(tmp_path):
    fake = _python("""
        import time
        print("starting...")
        print("SIMULATOR_READY http://127.0.0.1:4321/")
        time.sleep(60)
    """)
    with simulator_process(port=0, argv=fake, run_dir=tmp_path) as simulator:
        assert simulator.base_url == "http://127.0.0.1:4321"


def test_a_log_line_probe_waits_for_its_pattern(tmp_path):
    code = "import time; time.sleep(0.3); print('LISTENING', flush=True); time.sleep(60)"
    with ManagedProcess("late", _python(code), probe=log_line_probe("^LISTENING"), run_dir=tmp_path) as process:
        assert "LISTENING" in process.log_text()
