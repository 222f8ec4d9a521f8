"""Notifying the submitter: its notify_topic and/or its notify_url webhook."""
from __future__ import annotations

import logging
import time

import requests

from functions.config import Settings
from functions.domain import events
from functions.domain.record import Record
from functions.domain.submission import check_notify_url

log = logging.getLogger(__name__)

WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT_S = 10.0


class Notifier:
    def __init__(self, publisher, settings: Settings, session: requests.Session | None = None,
                 id_token=None, sleep=time.sleep):
        self._publisher = publisher
        self._settings = settings
        self._session = session or requests.Session()
        self._session.trust_env = False
        self._id_token = id_token or _google_id_token
        self._sleep = sleep

    def notify(self, record: Record, event_id: str) -> dict:
        """Send what the record asks for; returns the outcomes to record on it."""
        outcomes: dict = {}
        message = events.notification(record, event_id)
        if record.notify_topic:
            outcomes["notify_topic"] = {"message_id": self._publisher.publish_one(record.notify_topic, message)}
        if record.notify_url:
            outcomes["notify_url"] = self._post(record.notify_url, message)
        return outcomes

    def _post(self, url: str, message: events.Message) -> dict:
        # Re-checked at send time: the allowlist may have shrunk since submission.
        check_notify_url(url, self._settings.notify_url_prefixes)
        headers = {"Content-Type": "application/json", "ce-id": message.data["event_id"]}
        token = None if self._settings.api_base_url else self._id_token(url)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        outcome: dict = {"attempts": 0}
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            outcome["attempts"] = attempt
            try:
                response = self._session.post(url, data=message.encoded(), headers=headers,
                                              timeout=WEBHOOK_TIMEOUT_S, allow_redirects=False)
                outcome["status"] = response.status_code
                if response.status_code < 500 and response.status_code != 429:
                    break
            except requests.RequestException as exc:
                outcome["status"] = None
                outcome["error"] = type(exc).__name__
            if attempt < WEBHOOK_ATTEMPTS:
                self._sleep(0.5 * 2 ** (attempt - 1))
        outcome["delivered"] = bool(outcome.get("status") and 200 <= outcome["status"] < 300)
        if not outcome["delivered"]:
            log.warning("webhook notification not delivered", extra={"notify_url": url, **outcome})
        return outcome


def _google_id_token(audience: str) -> str:
    """A Google-signed ID token for the webhook's audience (metadata server or ADC)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
