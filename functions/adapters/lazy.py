"""Clients built on first use: importing main.py must do no network or auth work."""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built once, on first `get()`, safely across threads; lock-free afterwards."""

    def __init__(self, build: Callable[[], T], value: T | None = None):
        self._build = build
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value
