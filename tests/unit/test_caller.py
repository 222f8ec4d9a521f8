"""requested_by comes from the caller's ID token (verified by Cloud Run), never the body."""
from __future__ import annotations

import base64
import json

import pytest

from functions.adapters.caller import caller_identity


def jwt(payload) -> str:
    def part(value) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2lnbmF0dXJl"


def test_the_email_of_the_bearer_token_is_the_caller():
    token = jwt({"email": "ops@example.com", "email_verified": True, "sub": "1234"})
    assert caller_identity({"Authorization": f"Bearer {token}"}) == "ops@example.com"


def test_x_serverless_authorization_wins_over_authorization():
    headers = {"Authorization": f"Bearer {jwt({'email': 'app@example.com'})}",
               "X-Serverless-Authorization": f"Bearer {jwt({'email': 'invoker@example.com'})}"}
    assert caller_identity(headers) == "invoker@example.com"


def test_an_unverified_email_falls_back_to_the_subject():
    assert caller_identity({"Authorization": f"Bearer {jwt({'email': 'x@y.z', 'email_verified': False, 'sub': '99'})}"}) == "99"


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic dXNlcjpwdw==", "Bearer ya29.an-oauth-access-token",
    "Bearer a.b.c", f"Bearer {jwt([1, 2])}", f"Bearer {jwt({'email': 5})}", "Bearer " + jwt({"email": "a\x0bb"}),
    f"Bearer {jwt(b'[' * 5000)}",
])
def test_no_readable_token_means_no_identity(header):
    assert caller_identity({} if header is None else {"Authorization": header}) is None
