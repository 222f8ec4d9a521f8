"""Cold start: `import main` in a fresh interpreter against the client libraries alone.

Each sample is a new `python -c` process timing its own import with
perf_counter (interpreter start-up excluded); the median of REPEATS samples,
alternating the two cases. A third case imports main with socket creation,
connect and DNS look-ups counted, to check that importing main does no
network work.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench import ROOT

GOAL_RATIO = 1.2
LIBS = "import functions_framework, google.cloud.firestore, google.cloud.pubsub_v1, google.auth, requests"
MAIN = "import main"
_TIMER = "import time; _t = time.perf_counter(); {stmt}; print(time.perf_counter() - _t)"
_SOCKETS = r"""
import json, socket
counts = {"socket": 0, "connect": 0, "getaddrinfo": 0, "create_connection": 0}
_Socket = socket.socket
class Counted(_Socket):
    def __init__(self, *a, **k):
        counts["socket"] += 1
        super().__init__(*a, **k)
    def connect(self, *a, **k):
        counts["connect"] += 1
        return super().connect(*a, **k)
    def connect_ex(self, *a, **k):
        counts["connect"] += 1
        return super().connect_ex(*a, **k)
socket.socket = Counted
_gai, _cc = socket.getaddrinfo, socket.create_connection
def gai(*a, **k):
    counts["getaddrinfo"] += 1
    return _gai(*a, **k)
def cc(*a, **k):
    counts["create_connection"] += 1
    return _cc(*a, **k)
socket.getaddrinfo, socket.create_connection = gai, cc
import main
print(json.dumps(counts))
"""


def _env() -> dict:
    # As in Cloud Functions: a project set, no emulators, nothing cached in-process.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST") and not k.startswith("LRO_")}
    env.update({"GOOGLE_CLOUD_PROJECT": "bench-cold", "PYTHONDONTWRITEBYTECODE": "0"})
    return env


def _sample(stmt: str) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMER.format(stmt=stmt)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    repeats = 5 if quick else 9
    _sample(MAIN), _sample(LIBS)  # warm the OS file cache and .pyc files
    mains, libs = [], []
    for _ in range(repeats):
        mains.append(_sample(MAIN))
        libs.append(_sample(LIBS))
    sockets = subprocess.run([sys.executable, "-c", _SOCKETS], cwd=ROOT, env=_env(), capture_output=True,
                             text=True, timeout=120)
    try:
        counts = json.loads(sockets.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        counts = {"error": sockets.stderr[-500:]}
    main_s, libs_s = statistics.median(mains), statistics.median(libs)
    ratio = main_s / libs_s
    # A socket merely created is not network work (urllib3 probes IPv6 at import by binding ::1);
    # connecting or resolving a name is.
    no_network = ("error" not in counts and
                  counts["connect"] == 0 and counts["getaddrinfo"] == 0 and counts["create_connection"] == 0)
    return {
        "repeats": repeats, "main_median_s": main_s, "libs_median_s": libs_s, "ratio": ratio,
        "main_samples_s": mains, "libs_samples_s": libs, "libs": LIBS, "network_on_import": counts,
        "no_network": no_network, "goal": f"import main <= {GOAL_RATIO}x the client libraries; no network on import",
        "verdict": "PASS" if ratio <= GOAL_RATIO and no_network else "MISS",
    }
