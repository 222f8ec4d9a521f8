"""Child processes of the local stack: start, wait until ready, stop — written once.

Every local piece (the two emulators, the simulator, the four function
processes) is a `ManagedProcess`:
- its own process group, so stopping it also reaches grandchildren (gunicorn
  workers under functions-framework);
- output in a log file under the run directory, so a failure can be diagnosed
  (its tail is put into the exception);
- a readiness probe, checked only while the process is still alive;
- registered for clean-up at interpreter exit and on SIGTERM/SIGHUP, and (when
  started from the main thread) given a parent-death signal, so that no
  emulator outlives a killed test run.
"""
from __future__ import annotations

import atexit
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = REPO_ROOT / ".run"
HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 where nothing listens

Probe = Callable[["ManagedProcess"], bool]


class ProcessFailed(RuntimeError):
    """A child exited early or was not ready in time; the message carries its log tail."""


# Ports for our children come from below Linux's ephemeral range (32768-60999 by default),
# never from bind(0): the kernel hands ephemeral ports to every outgoing connection and to every
# child that binds port 0 itself (the Firestore emulator's WebSocket server), so a port it picked
# for us, free when checked, could be taken before the child bound it ("Address already in use").
PORT_RANGE = (20000, 32767)
_given: set[int] = set()  # never hand out the same port twice in one process
_given_lock = threading.Lock()


def free_port() -> int:
    """A port that was free a moment ago, picked at random outside the ephemeral range (callers
    bind it soon after). Random, so that test workers picking side by side rarely pick alike."""
    low, high = PORT_RANGE
    with _given_lock:
        for port in random.sample(range(low, high + 1), 200):
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    raise OSError(f"no free port found between {low} and {high}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def child_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ plus overrides (None removes a variable); Python children unbuffered
    so that their log lines (and the simulator's ready line) reach the log at once."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


# --- readiness probes -------------------------------------------------------

def tcp_probe(port: int, host: str = HOST) -> Probe:
    def probe(_: "ManagedProcess") -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def http_ok_probe(url: str, body: str = "Ok") -> Probe:
    """The emulators answer `GET /` with `Ok` once they serve requests."""

    def probe(_: "ManagedProcess") -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return response.status == 200 and response.read().decode(errors="replace").strip() == body
        except (OSError, urllib.error.URLError):
            return False

    return probe


def log_line_probe(pattern: str) -> Probe:
    regex = re.compile(pattern, re.MULTILINE)
    return lambda process: regex.search(process.log_text()) is not None


# --- the process ------------------------------------------------------------

_log_counter = itertools.count(1)


class ManagedProcess:
    """One child process with a log file, a readiness probe and a reliable stop.

    `start()` returns at once (so several children can boot side by side);
    `wait_ready()` blocks; as a context manager it does both and stops on exit.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        probe: Probe,
        env: Mapping[str, str] | None = None,
        cwd: Path | str = REPO_ROOT,
        run_dir: Path | str | None = None,
        port: int | None = None,
        url: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.probe = probe
        self.env = dict(env) if env is not None else child_env()
        self.cwd = Path(cwd)
        self.run_dir = Path(run_dir) if run_dir else DEFAULT_RUN_DIR
        self.port = port
        self.url = url
        self.stop_signal = stop_signal
        self.log_path = self.run_dir / f"{name}-{os.getpid()}-{next(_log_counter)}.log"
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} port={self.port}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "ManagedProcess":
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _install_cleanup()
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                _orphan_guard() + self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the whole group
            )
        _live.add(self)
        return self

    def wait_ready(self, timeout: float = 60.0) -> "ManagedProcess":
        if self._proc is None:
            raise RuntimeError(f"{self.name} not started")
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_alive():
                raise ProcessFailed(self._failure(f"exited with code {self._proc.returncode} before it was ready"))
            if self.probe(self):
                return self
            if time.monotonic() > deadline:
                raise ProcessFailed(self._failure(f"not ready after {timeout:g}s"))
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """Polite signal to the group, then SIGKILL for whatever is left (idempotent)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.request_stop()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Also reaches group members that outlived the leader (e.g. a gunicorn worker).
        self._signal_group(signal.SIGKILL)
        proc.wait()
        _live.discard(self)

    def request_stop(self) -> None:
        """Send the polite signal without waiting (lets several children wind down at once)."""
        if self.is_alive():
            self._signal_group(self.stop_signal)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> "ManagedProcess":
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _failure(self, what: str) -> str:
        return f"{self.name} {what}; log {self.log_path}:\n{self.log_tail()}"


def start_all(processes: Sequence[ManagedProcess], timeout: float = 60.0) -> None:
    """Boot side by side (start all, then wait for each); on any failure stop them all."""
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready(timeout)
    except BaseException:
        stop_all(processes)
        raise


def stop_all(processes: Sequence[ManagedProcess]) -> None:
    """Ask all to stop, then wait for (or kill) each one."""
    for process in processes:
        process.request_stop()
    for process in processes:
        process.stop()


# --- the two kinds of Python children of the local stack ---------------------

def function_process(
    target: str,
    *,
    source: Path | str | None = None,
    port: int | None = None,
    env: Mapping[str, str | None] | None = None,
    run_dir: Path | str | None = None,
) -> ManagedProcess:
    """`functions-framework --target=T --source=main.py` on 127.0.0.1 (not started).

    Ready when its port accepts connections: functions-framework imports the
    source before it binds, so an import error shows up as an early exit.
    """
    port = port or free_port()
    source = Path(source) if source else REPO_ROOT / "main.py"
    # gunicorn 27 binds a control socket at one path per user (~/.gunicorn/gunicorn.ctl, or under
    # XDG_RUNTIME_DIR): functions started side by side would fight over it, and the loser logs a
    # line that is not JSON. A directory per port keeps them apart (and the path short).
    control_dir = Path(tempfile.gettempdir()) / "lrowatch-gunicorn" / str(port)
    control_dir.mkdir(parents=True, exist_ok=True)
    env = {**(env or {}), "XDG_RUNTIME_DIR": str(control_dir)}
    argv = [
        sys.executable, "-m", "functions_framework",
        f"--target={target}", f"--source={source}", f"--port={port}", "--host", HOST,
    ]
    return ManagedProcess(
        f"fn-{target}",
        argv,
        probe=tcp_probe(port),
        env=child_env(env),
        run_dir=run_dir,
        port=port,
        url=f"http://{HOST}:{port}",
        stop_signal=signal.SIGINT,  # gunicorn's quick shutdown; SIGTERM waits for requests up to 30 s
    )


SIMULATOR_READY = re.compile(r"^SIMULATOR_READY (\S+)", re.MULTILINE)


class SimulatorProcess(ManagedProcess):
    """The Operations API simulator; its URL is the one it announces when listening."""

    @property
    def base_url(self) -> str | None:
        match = SIMULATOR_READY.search(self.log_text())
        return match.group(1).rstrip("/") if match else self.url


def simulator_process(
    *,
    port: int | None = None,
    env: Mapping[str, str | None] | None = None,
    run_dir: Path | str | None = None,
    argv: Sequence[str] | None = None,
) -> SimulatorProcess:
    """`python -m functions.simulator` (not started). Pass `port` to know the URL
    before it is ready (the stack does, to start everything side by side)."""
    port = port if port is not None else free_port()
    argv = list(argv) if argv else [sys.executable, "-m", "functions.simulator", "--host", HOST, "--port", str(port)]
    return SimulatorProcess(
        "simulator",
        argv,
        probe=log_line_probe(SIMULATOR_READY.pattern),
        env=child_env(env),
        run_dir=run_dir,
        port=port or None,
        url=f"http://{HOST}:{port}" if port else None,
    )


# --- clean-up when the parent goes away -------------------------------------

_live: set[ManagedProcess] = set()
_cleanup_installed = False
_cleanup_lock = threading.Lock()


def _orphan_guard() -> list[str]:
    """`setpriv --pdeathsig KILL`: the kernel kills the child if this process dies
    without running clean-up (e.g. SIGKILL). Only from the main thread, because
    the signal fires when the *thread* that forked exits."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _stop_live() -> None:
    stop_all(list(_live))


def _install_cleanup() -> None:
    global _cleanup_installed
    with _cleanup_lock:
        if _cleanup_installed:
            return
        _cleanup_installed = True
    atexit.register(_stop_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _stop_then_die)


def _stop_then_die(sig: int, _frame) -> None:
    # Stop the children, then die of the same signal as we would have without us.
    _stop_live()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
