"""Parsing JSON from outside (request bodies, Pub/Sub data, API answers) within bounds.

Python's json parser recurses once per nesting level, so `[[[[…` 5,000 deep
raises RecursionError (or worse, on a thread's small stack). The nesting depth
is therefore measured first, without recursion, on the text with its strings
cut out; only text within MAX_DEPTH is handed to the parser. Protocol Buffers'
JSON parser stops at 100 levels too, so no real Google answer is refused.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 100

# A JSON string token (tokenising left to right, a quote outside a string always starts one).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


class JsonTooDeep(ValueError):
    """The JSON nests deeper than allowed."""


class JsonNotText(ValueError):
    """The JSON holds a string that is not valid Unicode text (a lone surrogate)."""


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of [ and { outside strings (an upper bound for malformed text)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_STEPS)
    if not brackets:
        return 0
    return max(accumulate(memoryview(brackets).cast("b")))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity; nobody else does


def compact(value: Any) -> str:
    """JSON without spaces, ASCII only: the form lrowatch stores, measures and publishes."""
    return json.dumps(value, separators=(",", ":"))


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, text_only: bool = False) -> Any:
    """json.loads, refusing nesting past max_depth (JsonTooDeep) and, with text_only,
    strings holding lone surrogates (JsonNotText), which Firestore and Pub/Sub can't carry.
    Malformed JSON (NaN and Infinity included) raises ValueError as json.loads does."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Nesting is never deeper than the number of [ and { (strings' included): only past the
    # limit is it worth measuring. Most texts stop here, at two counts in C.
    if data.count(b"[") + data.count(b"{") > max_depth:
        depth = nesting_depth(data)
        if depth > max_depth:
            raise JsonTooDeep(f"JSON nested {depth} levels deep (at most {max_depth})")
    value = json.loads(data, parse_constant=_refuse_constant)
    if text_only and not is_text(value):
        raise JsonNotText("JSON string holds a lone surrogate (\\ud800-\\udfff)")
    return value


def is_text(value: Any) -> bool:
    """Whether every string in `value` is valid Unicode: a lone surrogate (JSON `"\\ud800"`)
    can be neither encoded as UTF-8 nor stored in Firestore or Pub/Sub."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
