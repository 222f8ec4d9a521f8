"""Where lrowatch may act (LRO_ALLOWED_PARENTS): the guard against a confused deputy.

lrowatch's service accounts can reach more projects than any one caller should
steer them to. A submission's operation name, quota_project and notify_topic
must each fall inside one of the allowed parents (`projects/ID`,
`projects/NUMBER`, `organizations/ID`, `folders/ID`). "Inside" is read from the
resource name itself: lrowatch does not walk the resource hierarchy (that
would need Resource Manager access at every submit), so a project under an
allowed folder must be listed itself. Names without a parent (Vision's
`locations/L/operations/ID`, `operations/ID`) belong to the credentials' own
project and are allowed. Pure: no I/O.
"""
from __future__ import annotations

import re

from functions.domain.errors import PermissionDenied

_PARENT = re.compile(
    r"^(?:projects/(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})|organizations/[0-9]{1,20}|folders/[0-9]{1,20})\Z")
_NO_PARENT = ("locations", "operations")
_SCOPES = ("projects", "organizations", "folders")


def parse_allowed(raw: str | None) -> tuple[str, ...] | None:
    """The comma-separated list, checked; None when unset (any parent: local use only)."""
    if raw is None or not raw.strip():
        return None
    parents = tuple(p.strip() for p in raw.split(",") if p.strip())
    for parent in parents:
        if not _PARENT.match(parent):
            raise ValueError(f"{parent!r} is not projects/ID, projects/NUMBER, organizations/ID or folders/ID")
    return parents


def parent_of(name: str) -> str | None:
    """The resource a name lives in (`projects/P`, `folders/F` …); None for parentless names."""
    segments = name.split("/")
    if segments[0] in _NO_PARENT or len(segments) == 1:
        # Parentless forms (operations/…, locations/…, Speech v1's bare ids) may still embed the
        # resource they act on: Bigtable admin's operations/projects/P/instances/I/…/operations/N.
        for scope, value in zip(segments, segments[1:]):
            if scope in _SCOPES:
                return f"{scope}/{value}"
        return None
    return "/".join(segments[:2])


def check_allowed(allowed: tuple[str, ...] | None, *, name: str, quota_project: str | None = None,
                  notify_topic: str | None = None) -> None:
    """Raise PermissionDenied unless everything named falls inside `allowed`."""
    if allowed is None:
        return
    for field, parent in (("name", parent_of(name)),
                          ("quota_project", f"projects/{quota_project}" if quota_project else None),
                          ("notify_topic", parent_of(notify_topic) if notify_topic else None)):
        if parent is not None and parent not in allowed:
            raise PermissionDenied(f"{field} is in {parent[:200]}, outside the projects this lrowatch deployment "
                                   "may act in (LRO_ALLOWED_PARENTS)")
