"""Where the CLI talks to: a deployed `submit` URL, or the local demo.

Order: --url, then --local (the file `make demo` writes while it runs), then
the LROWATCH_URL environment variable. Deployed URLs (https) get a Google ID
token whose audience is the function's URL; local ones (http) get none.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from functions.cli.errors import Unreachable, UsageError

ENV_URL = "LROWATCH_URL"
ENV_DEMO_FILE = "LROWATCH_DEMO_FILE"  # where `--local` looks (default .run/demo.json)
DEMO_FILE = Path(".run") / "demo.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Target:
    submit_url: str
    local: bool = False
    demo: dict = field(default_factory=dict)  # the demo's file, when --local

    @property
    def needs_token(self) -> bool:
        return urlsplit(self.submit_url).scheme == "https"

    @property
    def audience(self) -> str:
        """Cloud Functions / Cloud Run check the token's audience against the service URL."""
        parts = urlsplit(self.submit_url)
        return f"{parts.scheme}://{parts.netloc}"


def resolve(url: str | None, local: bool) -> Target:
    if url and local:
        raise UsageError("give either --url or --local, not both")
    if url:
        return Target(_checked_url(url))
    if local:
        return local_target()
    if os.environ.get(ENV_URL):
        return Target(_checked_url(os.environ[ENV_URL]))
    raise UsageError("no lrowatch to talk to",
                     "use --local while `make demo` runs, or --url https://…/ (the deployed submit "
                     f"function's URL), or set {ENV_URL}")


def local_target() -> Target:
    path = demo_file()
    if path is None:
        raise Unreachable("the local demo is not running (no .run/demo.json)",
                          "start it in another terminal with `make demo`, then run this again")
    try:
        demo = json.loads(path.read_text())
        return Target(_checked_url(demo["submit"]), local=True, demo=demo)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unreachable(f"cannot read {path}: {exc}", "restart the demo with `make demo`") from exc


def demo_file() -> Path | None:
    if os.environ.get(ENV_DEMO_FILE):
        candidates = [Path(os.environ[ENV_DEMO_FILE])]
    else:  # the current directory first, then the checkout this CLI runs from
        candidates = [DEMO_FILE, _REPO_ROOT / DEMO_FILE]
    return next((p for p in candidates if p.is_file()), None)


def _checked_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"{url!r} is not a submit URL", "expected e.g. https://REGION-PROJECT.cloudfunctions.net/lro-submit")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        # An ID token must never travel in clear text, and deployed functions are https only.
        raise UsageError(f"{url!r} is plain http", "deployed functions are https; http is for the local demo")
    return url.strip().rstrip("/")


# Google ID tokens live an hour; one is replaced this long before it expires, so a
# request never leaves with a token that lapses in flight.
REFRESH_MARGIN_S = 300.0
UNKNOWN_LIFETIME_S = 600.0  # a token whose expiry cannot be read is kept this long


class IdTokens:
    """The ID token for one audience, fetched when first needed and replaced before expiry."""

    def __init__(self, audience: str, fetch: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.time, margin_s: float = REFRESH_MARGIN_S):
        self._audience, self._fetch, self._clock, self._margin_s = audience, fetch, clock, margin_s
        self._token: str | None = None
        self._expires_at = self._lifetime = 0.0

    def get(self) -> str:
        now = self._clock()
        if self._token is None or now >= self._expires_at - min(self._margin_s, self._lifetime / 2):
            fetch = self._fetch or id_token  # looked up per call, so tests may replace id_token
            self._token = fetch(self._audience)
            self._expires_at = expiry_of(self._token) or now + UNKNOWN_LIFETIME_S
            self._lifetime = max(self._expires_at - now, 0.0)
        return self._token

    def invalidate(self) -> None:
        """Forget the token (the service refused it): the next get() fetches a new one."""
        self._token = None


def expiry_of(token: str) -> float | None:
    """The `exp` claim of a JWT (seconds since the epoch), read without verifying it:
    the CLI only needs to know when to ask for a new one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None


def id_token(audience: str) -> str:
    """A Google ID token for `audience`: google-auth first (service account, metadata
    server), then the gcloud user's own identity."""
    try:
        import google.auth.transport.requests
        import google.oauth2.id_token

        return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except Exception:  # noqa: BLE001 — any failure here means "try gcloud"
        pass
    try:
        done = subprocess.run(["gcloud", "auth", "print-identity-token"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    raise Unreachable("could not get a Google ID token to call the deployed function",
                      "run `gcloud auth login` (or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                      "account key) and make sure you may invoke the submit function")
