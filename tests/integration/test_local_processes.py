"""ManagedProcess: the one start/wait/stop used by every local child process."""
from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from functions.local import processes
from functions.local.processes import (
    PORT_RANGE,
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


def test_free_ports_come_from_below_the_ephemeral_range_and_are_never_given_twice():
    # The kernel gives ephemeral ports to outgoing connections and to bind(0): one it picked for a
    # child could be taken before the child bound it (CI once lost a Firestore emulator that way).
    ports = [free_port() for _ in range(50)]
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert len(set(ports)) == 50 and all(PORT_RANGE[0] <= port < ephemeral_low for port in ports)


def test_a_port_in_use_is_not_given(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(processes.random, "sample", lambda population, k: [taken, 29999, 29998])
        monkeypatch.setattr(processes, "_given", set())
        assert free_port() in (29999, 29998)
