"""Builds the services from Settings, once per configuration, lazily.

Importing this module (or main.py) does no network work: clients are created
on first use, so cold starts stay cheap.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from functions import logs
from functions.config import Settings

if TYPE_CHECKING:  # the services import their adapters' libraries lazily; so does this module
    from functions.services.handle import HandleService
    from functions.services.poll import PollService
    from functions.services.submit import SubmitService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """The use cases, each built on the ports (functions.ports) its adapters implement."""

    settings: Settings
    submit: "SubmitService"
    poll: "PollService"
    handle: "HandleService"


@functools.lru_cache(maxsize=8)
def build(settings: Settings) -> Services:
    from functions.adapters.firestore_claims import FirestoreClaims
    from functions.adapters.firestore_durations import FirestoreDurations
    from functions.adapters.firestore_leases import FirestoreLeases
    from functions.services.discovery import Discovery
    from functions.adapters.firestore_store import FirestoreStore
    from functions.adapters.notifier import Notifier
    from functions.adapters.operations_api import OperationsApi
    from functions.adapters.pubsub_publisher import Publisher
    from functions.services.handle import HandleService
    from functions.services.poll import PollService
    from functions.services.submit import SubmitService

    logs.setup(settings.log_level)
    if settings.api_base_url:
        log.warning("LRO_API_BASE_URL=%s: local/testing mode, Operations API calls carry no credentials",
                    settings.api_base_url)
    if settings.allowed_parents is None:
        log.warning("LRO_ALLOWED_PARENTS is unset: submissions may name operations, quota projects and "
                    "notify topics in any project this deployment's service accounts can reach (local use only)")
    store = FirestoreStore(settings.project, settings.collection)
    publisher = Publisher()
    api = OperationsApi(settings.api_base_url, pool_size=settings.poll_concurrency)
    notifier = Notifier(publisher, settings)
    leases = FirestoreLeases(store, settings.leases_collection)
    return Services(
        settings=settings,
        submit=SubmitService(settings, store, publisher),
        poll=PollService(settings, store, api, publisher, leases=leases,
                         durations=FirestoreDurations(store, settings.durations_collection),
                         discovery=Discovery(settings, store, leases, api), fan_out=True),
        handle=HandleService(settings, store, FirestoreClaims(store, settings.claims_collection), api,
                             publisher, notifier),
    )


def current() -> Services:
    """Services for the process environment (read on each call: cheap, and tests may change it)."""
    return build(Settings.from_env())
