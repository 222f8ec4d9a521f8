"""Who called: the identity in the request's ID token, which Cloud Run has already verified.

lrowatch's HTTP functions have no public invoker: Cloud Run (Cloud Functions
2nd gen) checks the bearer token's signature, audience and expiry, and the
caller's roles/run.invoker, before a request reaches the code. So the token's
payload is read here without verifying it again: a request whose token is
not valid never arrives, and when the token came in X-Serverless-Authorization
Cloud Run removes its signature, so it could not be verified here anyway.
Locally (functions-framework with no Cloud Run in front) nothing verifies the
header: the identity is then whatever the caller wrote, which is why it is
only ever recorded, never used to decide anything.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Mapping

MAX_IDENTITY = 256


def caller_identity(headers: Mapping[str, str]) -> str | None:
    """The caller's e-mail (or subject) from its bearer ID token; None without one."""
    header = headers.get("X-Serverless-Authorization") or headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None  # not a JWT: an OAuth access token names nobody we can read
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    identity = payload.get("email") if payload.get("email_verified", True) is True else None
    identity = identity or payload.get("sub")
    if not isinstance(identity, str) or not identity.isprintable():
        return None
    return identity[:MAX_IDENTITY]
