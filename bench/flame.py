"""Hot spots from a py-spy raw profile (collapsed stacks: `frame;frame;... count`).

py-spy samples every thread of the poller (idle threads left out), so the
shares are of the CPU the run used, whichever thread used it. Self time is the
innermost frame of each sample; total time counts a frame once per sample it
appears in.
"""
from __future__ import annotations

import re
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _where(frame: str) -> str:
    """`commit (functions/adapters/firestore_store.py:123)` → `firestore_store.py:commit`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()[:80]
    path = match.group("file")
    return f"{path.rsplit('/', 1)[-1]}:{match.group('fn')}"


def _package(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = match.group("file") if match else ""
    for marker, name in (("/functions/", "lrowatch"), ("/google/cloud/firestore", "firestore client"),
                         ("/google/cloud/pubsub", "pubsub client"), ("/grpc/", "grpc"),
                         ("/proto/", "proto-plus"), ("/google/protobuf/", "protobuf"),
                         ("/google/api_core/", "api-core"), ("/requests/", "requests"),
                         ("/urllib3/", "urllib3"), ("/json/", "json"), ("/http/", "http.client"),
                         ("/concurrent/", "threads"), ("threading.py", "threads"), ("/ssl", "ssl"),
                         ("/socket", "socket")):
        if marker in path:
            return name
    return "other"


def top(path: str, n: int = 15) -> dict:
    samples: list[tuple[list[str], int]] = []
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                samples.append((stack.split(";"), int(count)))
    total = sum(c for _, c in samples) or 1
    self_time, inclusive, packages = Counter(), Counter(), Counter()
    for frames, count in samples:
        self_time[_where(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for where in {_where(f) for f in frames}:
            inclusive[where] += count
    return {
        "samples": total,
        "self": [(k, round(100 * v / total, 1)) for k, v in self_time.most_common(n)],
        "total": [(k, round(100 * v / total, 1)) for k, v in inclusive.most_common(n)
                  if not k.startswith(("threading.py", "thread.py"))][:n],
        "by_library": [(k, round(100 * v / total, 1)) for k, v in packages.most_common()],
    }
