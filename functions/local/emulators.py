"""The Firestore and Pub/Sub emulators, started straight from the SDK's jars.

`gcloud emulators ... start` detaches the JVM and leaves it behind when stopped,
so we run `java` ourselves as a ManagedProcess (own process group, log file).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from functions.local.processes import (
    HOST,
    ManagedProcess,
    ProcessFailed,
    child_env,
    free_port,
    http_ok_probe,
    start_all,
    stop_all,
)

__all__ = [
    "Emulator", "Emulators", "ProcessFailed", "clear_firestore", "free_port",
    "sdk_root", "start_firestore", "start_pubsub",
]

FALLBACK_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
JAVA_HEAP = "-Xmx256m"  # two JVMs on a small machine


@functools.lru_cache(maxsize=1)
def sdk_root() -> Path:
    """CLOUDSDK_ROOT_DIR, else where `gcloud` lives, else `gcloud info`, else the Debian path."""
    if os.environ.get("CLOUDSDK_ROOT_DIR"):
        return Path(os.environ["CLOUDSDK_ROOT_DIR"])
    gcloud = shutil.which("gcloud")
    if gcloud:
        guess = Path(os.path.realpath(gcloud)).parents[1]  # SDK/bin/gcloud
        if (guess / "platform").is_dir():
            return guess
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return FALLBACK_SDK_ROOT


class Emulator(ManagedProcess):
    """One emulator JVM; `host` is the value of its *_EMULATOR_HOST variable."""

    def __init__(self, kind: str, argv: list[str], port: int, run_dir: Path | str | None = None) -> None:
        super().__init__(
            f"{kind}-emulator",
            argv,
            probe=http_ok_probe(f"http://{HOST}:{port}/"),
            env=child_env(),
            run_dir=run_dir,
            port=port,
            url=f"http://{HOST}:{port}",
        )
        self.kind = kind

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"


def firestore_emulator(port: int | None = None, run_dir: Path | str | None = None) -> Emulator:
    port = port or free_port()
    jar = _find_jar("cloud-firestore-emulator", "cloud-firestore-emulator.jar")
    argv = ["java", JAVA_HEAP, "-cp", str(jar), "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            f"--host={HOST}", f"--port={port}"]
    return Emulator("firestore", argv, port, run_dir)


def pubsub_emulator(port: int | None = None, run_dir: Path | str | None = None) -> Emulator:
    port = port or free_port()
    jar = _find_jar("pubsub-emulator/lib", "cloud-pubsub-emulator-*-all.jar")
    argv = ["java", JAVA_HEAP, "-jar", str(jar), f"--host={HOST}", f"--port={port}"]
    return Emulator("pubsub", argv, port, run_dir)


def start_firestore(port: int | None = None, run_dir: Path | str | None = None) -> Emulator:
    """Started, not yet ready: call `.wait_ready()` (lets both JVMs boot side by side)."""
    return firestore_emulator(port, run_dir).start()


def start_pubsub(port: int | None = None, run_dir: Path | str | None = None) -> Emulator:
    """Started, not yet ready: call `.wait_ready()`."""
    return pubsub_emulator(port, run_dir).start()


def clear_firestore(host: str, project: str) -> None:
    """Delete every document of one project (the emulator's own reset endpoint)."""
    database = urllib.parse.quote("(default)")
    url = f"http://{host}/emulator/v1/projects/{project}/databases/{database}/documents"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as response:
        response.read()


class Emulators:
    """Both emulators, booted side by side; a context manager.

    >>> with Emulators() as emulators:
    ...     os.environ.update(emulators.env())
    """

    def __init__(self, run_dir: Path | str | None = None, timeout: float = 60.0) -> None:
        self.firestore = firestore_emulator(run_dir=run_dir)
        self.pubsub = pubsub_emulator(run_dir=run_dir)
        self.timeout = timeout

    @property
    def processes(self) -> list[Emulator]:
        return [self.firestore, self.pubsub]

    def start(self) -> "Emulators":
        start_all(self.processes, self.timeout)
        return self

    def stop(self) -> None:
        stop_all(self.processes)

    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.firestore.host, "PUBSUB_EMULATOR_HOST": self.pubsub.host}

    def clear_firestore(self, project: str) -> None:
        clear_firestore(self.firestore.host, project)

    def __enter__(self) -> "Emulators":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _find_jar(component: str, pattern: str) -> Path:
    """The newest jar matching `pattern` under SDK/platform/component."""
    directory = sdk_root() / "platform" / component
    jars = sorted(directory.glob(pattern))
    if not jars:
        raise FileNotFoundError(
            f"no {pattern} in {directory}: install the Cloud SDK emulator components or set CLOUDSDK_ROOT_DIR"
        )
    return jars[-1]
