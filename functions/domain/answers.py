"""Shape checks on what the Operations API answered, before anything uses it.

A google.longrunning.Operation is an object whose `name` is the operation
asked for, `done` a boolean, `metadata`/`response` objects and `error` a
google.rpc.Status. An answer that is something else (an array, wrong types,
another operation's name) is that operation's error, never a crash and never
another operation's data.
"""
from __future__ import annotations

from typing import Any, Mapping

_STATUS_TYPES = {"code": int, "message": str, "details": list}


def operation_problem(answer: Any, asked_name: str) -> str | None:
    """Why `answer` is not the Operation named `asked_name`; None when it is one."""
    if not isinstance(answer, Mapping):
        return f"the answer is a JSON {_kind(answer)}, not an Operation object"
    name = answer.get("name")
    if name is not None and not same_operation(name, asked_name):
        return "the answer names a different operation than the one asked for"
    if "done" in answer and not isinstance(answer["done"], bool):
        return f"done is a {_kind(answer['done'])}, not a boolean"
    for key in ("metadata", "response", "error"):
        if answer.get(key) is not None and not isinstance(answer[key], Mapping):
            return f"{key} is a {_kind(answer[key])}, not an object"
    error = answer.get("error") or {}
    for key, wanted in _STATUS_TYPES.items():
        value = error.get(key)
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            return f"error.{key} is a {_kind(value)}, not a {_kind(wanted())}"
    return None


def same_operation(answered: Any, asked: str) -> bool:
    """Whether the answer's name is the asked one. APIs may answer a project id with
    its number (`projects/my-proj/…` → `projects/123/…`), so that segment may differ."""
    if not isinstance(answered, str):
        return False
    if answered == asked:
        return True
    mine, theirs = asked.split("/"), answered.split("/")
    if len(mine) != len(theirs):
        return False
    return all(a == b or (i > 0 and mine[i - 1] == "projects" and theirs[i - 1] == "projects")
               for i, (a, b) in enumerate(zip(mine, theirs)))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
