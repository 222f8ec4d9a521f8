"""Notifying the submitter: its notify_topic and/or its notify_url webhook.

Each channel is one effect (`send`), claimed separately by `handle`, so a
failure in one never repeats the other.

notify_url: https only, re-checked against LRO_NOTIFY_URL_PREFIXES at send
time, POSTed as a CloudEvents 1.0 binary-mode request (functions.domain.
cloudevents) with a Google-signed ID token whose audience is the URL's origin
(Cloud Run's convention: the service URL). Transient failures (connection
errors, timeouts, 429, 5xx) are retried a few times in-process; if the last
attempt still failed that way, NotifyUnavailable is raised, so that `handle`
answers 5xx and Pub/Sub redelivers the event later (its dead-letter topic is
the backstop): a receiver that is down for a while is not recorded as a final
"not delivered". Only a receiver's refusal (3xx, 4xx other than 408/429) is
final, returned to be recorded. No redirects are followed.

notify_topic: a publish that fails transiently raises (redelivered the same
way); a topic that does not exist or that lrowatch may not publish to is
final, returned as not delivered.

Local mode (LRO_API_BASE_URL set): no ID token is fetched, and
LRO_NOTIFY_CA_BUNDLE may name a PEM file of CAs to trust for the webhook
(a test receiver's self-signed certificate). It is ignored outside local
mode and never set by Terraform.
"""
from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as gexc

from functions.config import Settings
from functions.domain import cloudevents, events
from functions.domain.errors import TransientError
from functions.domain.record import Record
from functions.domain.submission import check_notify_url

log = logging.getLogger(__name__)

ENV_NOTIFY_CA_BUNDLE = "LRO_NOTIFY_CA_BUNDLE"  # local/testing only, like LRO_API_BASE_URL
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT_S = 10.0
TOPIC, URL = "notify_topic", "notify_url"


TRANSIENT_STATUS = frozenset({408, 429})  # and every 5xx


class NotifyUnavailable(TransientError):
    """The receiver failed in a way that may pass: have Pub/Sub deliver the event again."""


class Notifier:
    def __init__(self, publisher, settings: Settings, session: requests.Session | None = None,
                 id_token=None, sleep=time.sleep, ca_bundle: str | None = None):
        self._publisher = publisher
        self._settings = settings
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxies or netrc from the environment
        self._id_token = id_token or _google_id_token
        self._sleep = sleep
        local = bool(settings.api_base_url)
        self._verify: bool | str = (ca_bundle or os.environ.get(ENV_NOTIFY_CA_BUNDLE) or True) if local else True

    @staticmethod
    def channels(record: Record) -> list[str]:
        """The channels this record asks for, in the order they are served."""
        return [c for c, wanted in ((TOPIC, record.notify_topic), (URL, record.notify_url)) if wanted]

    def send(self, channel: str, record: Record, event_id: str) -> dict:
        """Notify one channel; returns the outcome to record on the record."""
        message = events.notification(record, event_id)
        if channel == TOPIC:
            try:
                return {"message_id": self._publisher.publish_one(record.notify_topic, message)}
            except (gexc.NotFound, gexc.PermissionDenied, gexc.InvalidArgument) as exc:
                log.error("notify_topic notification not delivered", extra={
                    "notify_topic": record.notify_topic, "event_id": event_id, "error": str(exc)[:300]})
                return {"delivered": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if channel == URL:
            return self._post(record.notify_url, message)
        raise ValueError(f"unknown notification channel {channel!r}")

    def _post(self, url: str, message: events.Message) -> dict:
        # Re-checked at send time: the allowlist may have shrunk since submission.
        check_notify_url(url, self._settings.notify_url_prefixes)
        headers = cloudevents.binary_headers(
            message.data, cloudevents.source(self._settings.project, self._settings.collection))
        if not self._settings.api_base_url:
            headers["Authorization"] = f"Bearer {self._id_token(audience_of(url))}"
        outcome: dict = {"attempts": 0}
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            outcome["attempts"] = attempt
            try:
                response = self._session.post(url, data=message.encoded(), headers=headers, verify=self._verify,
                                              timeout=WEBHOOK_TIMEOUT_S, allow_redirects=False)
                outcome.update(status=response.status_code, error=None)
                if not _transient(response.status_code):
                    break
            except requests.RequestException as exc:
                outcome.update(status=None, error=type(exc).__name__)
            if attempt < WEBHOOK_ATTEMPTS:
                self._sleep(0.5 * 2 ** (attempt - 1))
        status = outcome.get("status")
        if status is None or _transient(status):
            raise NotifyUnavailable(f"webhook failed {outcome['attempts']} times (last: "
                                    f"{status or outcome.get('error')}); the event will be delivered again")
        outcome["delivered"] = 200 <= status < 300
        if not outcome["delivered"]:
            log.error("webhook notification refused by its receiver", extra={
                "notify_url": url, "event_id": message.data["event_id"], **outcome})
        return outcome


def _transient(status: int) -> bool:
    return status >= 500 or status in TRANSIENT_STATUS


def audience_of(url: str) -> str:
    """The ID token's audience: the receiving service's URL (scheme and host)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _google_id_token(audience: str) -> str:
    """A Google-signed ID token for the webhook's audience (metadata server or ADC)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
