"""Environment → one frozen Settings object.

Every variable lrowatch reads is named here and nowhere else (the Terraform
wiring test checks each one is set on the functions that read it).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

from functions.domain.errors import ConfigError, InvalidArgument
from functions.domain.names import build_ref
from functions.domain.parents import parse_allowed
from functions.domain.policy import Policy
from functions.domain.ratelimit import Limit, parse_limits

# Contract §2 names, and the project's own tuning knobs (documented in README).
ENV_PROJECT = "GOOGLE_CLOUD_PROJECT"
ENV_COLLECTION = "LRO_COLLECTION"
ENV_EVENTS_TOPIC = "LRO_EVENTS_TOPIC"
ENV_COMMANDS_TOPIC = "LRO_COMMANDS_TOPIC"
ENV_SUBMISSIONS_TOPIC = "LRO_SUBMISSIONS_TOPIC"
ENV_POLL_SHARDS_TOPIC = "LRO_POLL_SHARDS_TOPIC"
ENV_API_BASE_URL = "LRO_API_BASE_URL"
ENV_NOTIFY_URL_PREFIXES = "LRO_NOTIFY_URL_PREFIXES"
ENV_POLL_BUDGET_S = "LRO_POLL_BUDGET_S"
ENV_POLL_CONCURRENCY = "LRO_POLL_CONCURRENCY"
ENV_POLL_BATCH = "LRO_POLL_BATCH"
ENV_LEASE_S = "LRO_LEASE_S"
ENV_SHARDS = "LRO_SHARDS"
ENV_DEFAULT_POLICY = "LRO_DEFAULT_POLICY"
ENV_MAX_PERMANENT_ERRORS = "LRO_MAX_PERMANENT_ERRORS"
ENV_NOT_FOUND_GRACE_S = "LRO_NOT_FOUND_GRACE_S"
ENV_RETENTION_DAYS = "LRO_RETENTION_DAYS"
ENV_WATCH_SCOPES = "LRO_WATCH_SCOPES"
ENV_LOG_LEVEL = "LRO_LOG_LEVEL"
ENV_ALLOWED_PARENTS = "LRO_ALLOWED_PARENTS"
ENV_HANDLER_TIMEOUT_S = "LRO_HANDLER_TIMEOUT_S"
ENV_RATE_LIMITS = "LRO_RATE_LIMITS"

# Read by every function (Terraform sets them on all four).
COMMON_ENV = (
    ENV_PROJECT,
    ENV_COLLECTION,
    ENV_EVENTS_TOPIC,
    ENV_COMMANDS_TOPIC,
    ENV_SUBMISSIONS_TOPIC,
    ENV_NOTIFY_URL_PREFIXES,
    ENV_DEFAULT_POLICY,
    ENV_RETENTION_DAYS,
    ENV_LOG_LEVEL,
    ENV_ALLOWED_PARENTS,
    ENV_HANDLER_TIMEOUT_S,
)
# Read by poll only.
POLL_ENV = (
    ENV_POLL_BUDGET_S,
    ENV_POLL_CONCURRENCY,
    ENV_POLL_BATCH,
    ENV_LEASE_S,
    ENV_SHARDS,
    ENV_POLL_SHARDS_TOPIC,
    ENV_MAX_PERMANENT_ERRORS,
    ENV_NOT_FOUND_GRACE_S,
    ENV_WATCH_SCOPES,
    ENV_RATE_LIMITS,
)
# Local/testing only: never set by Terraform.
# LRO_NOTIFY_CA_BUNDLE: extra CAs for webhooks, honoured only with LRO_API_BASE_URL (tests).
LOCAL_ONLY_ENV = (ENV_API_BASE_URL, "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "LRO_NOTIFY_CA_BUNDLE")


@dataclass(frozen=True)
class Settings:
    project: str
    collection: str = "lro_operations"
    events_topic: str = "lro-events"
    commands_topic: str = "lro-commands"
    submissions_topic: str = "lro-submissions"
    poll_shards_topic: str = "lro-poll-shards"  # poll's own fan-out: one message per shard run
    api_base_url: str | None = None
    notify_url_prefixes: tuple[str, ...] = ()
    poll_budget_s: float = 50.0
    poll_concurrency: int = 32
    poll_batch: int = 500  # due records per query: each query has a fixed cost, whatever its size
    lease_s: float = 60.0
    shards: int = 16
    default_policy: Policy = field(default_factory=Policy)
    max_permanent_errors: int = 5
    not_found_grace_s: float = 300.0
    retention_days: int = 35
    watch_scopes: tuple[tuple[str, str, str], ...] = ()  # (service, parent, filter)
    log_level: str = "INFO"
    # Where submissions may point lrowatch (functions.domain.parents); None: anywhere (local use).
    allowed_parents: tuple[str, ...] | None = None
    # Timeout of the Pub/Sub-pushed functions (handle, submit_pubsub): handle's claims outlive it.
    handler_timeout_s: float = 120.0
    rate_limits: tuple[Limit, ...] = ()  # configured ones; functions.domain.ratelimit adds the defaults

    @property
    def uses_emulators(self) -> bool:
        return bool(os.environ.get("FIRESTORE_EMULATOR_HOST") or os.environ.get("PUBSUB_EMULATOR_HOST"))

    def topic_path(self, topic: str) -> str:
        """Accept a short id or a full `projects/P/topics/T` path (contract §2)."""
        return topic if topic.startswith("projects/") else f"projects/{self.project}/topics/{topic}"

    @property
    def outbox_collection(self) -> str:
        return f"{self.collection}_outbox"

    @property
    def claims_collection(self) -> str:
        return f"{self.collection}_claims"

    @property
    def leases_collection(self) -> str:
        return f"{self.collection}_leases"

    @property
    def durations_collection(self) -> str:
        return f"{self.collection}_durations"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        project = env.get(ENV_PROJECT, "").strip()
        if not project:
            raise ConfigError(f"{ENV_PROJECT} is required")
        policy_json = env.get(ENV_DEFAULT_POLICY)
        try:
            policy = Policy.from_dict(json.loads(policy_json)) if policy_json else Policy()
            scopes = tuple((s["service"], s["parent"], s.get("filter", ""))
                           for s in json.loads(env.get(ENV_WATCH_SCOPES) or "[]"))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"bad JSON configuration: {exc}") from exc
        except InvalidArgument as exc:  # a default policy out of range is the deployment's fault
            raise ConfigError(f"{ENV_DEFAULT_POLICY}: {exc.message}") from exc
        try:
            allowed_parents = parse_allowed(env.get(ENV_ALLOWED_PARENTS))
        except ValueError as exc:
            raise ConfigError(f"{ENV_ALLOWED_PARENTS}: {exc}") from exc
        for service, parent, _filter in scopes:
            _check_watch_scope(service, parent)
        try:
            rate_limits = parse_limits(env.get(ENV_RATE_LIMITS, ""))
        except InvalidArgument as exc:
            raise ConfigError(f"{ENV_RATE_LIMITS}: {exc.message}") from exc
        prefixes = tuple(p.strip() for p in env.get(ENV_NOTIFY_URL_PREFIXES, "").split(",") if p.strip())
        for prefix in prefixes:
            if not prefix.startswith("https://") or prefix.count("/") < 3:
                raise ConfigError(f"{ENV_NOTIFY_URL_PREFIXES}: {prefix!r} must be an https://host/ prefix")
        return cls(
            project=project,
            collection=env.get(ENV_COLLECTION) or "lro_operations",
            events_topic=env.get(ENV_EVENTS_TOPIC) or "lro-events",
            commands_topic=env.get(ENV_COMMANDS_TOPIC) or "lro-commands",
            submissions_topic=env.get(ENV_SUBMISSIONS_TOPIC) or "lro-submissions",
            poll_shards_topic=env.get(ENV_POLL_SHARDS_TOPIC) or "lro-poll-shards",
            api_base_url=(env.get(ENV_API_BASE_URL) or "").rstrip("/") or None,
            notify_url_prefixes=prefixes,
            poll_budget_s=_number(env, ENV_POLL_BUDGET_S, 50.0, 1, 3500),
            poll_concurrency=int(_number(env, ENV_POLL_CONCURRENCY, 32, 1, 512)),
            poll_batch=int(_number(env, ENV_POLL_BATCH, 500, 1, 500)),
            lease_s=_number(env, ENV_LEASE_S, 60.0, 5, 3600),
            shards=int(_number(env, ENV_SHARDS, 16, 1, 256)),
            default_policy=policy,
            max_permanent_errors=int(_number(env, ENV_MAX_PERMANENT_ERRORS, 5, 1, 100)),
            not_found_grace_s=_number(env, ENV_NOT_FOUND_GRACE_S, 300.0, 0, 86400),
            retention_days=int(_number(env, ENV_RETENTION_DAYS, 35, 1, 3650)),
            watch_scopes=scopes,
            log_level=(env.get(ENV_LOG_LEVEL) or "INFO").upper(),
            allowed_parents=allowed_parents,
            handler_timeout_s=_number(env, ENV_HANDLER_TIMEOUT_S, 120.0, 10, 600),
            rate_limits=rate_limits,
        )


def _check_watch_scope(service: object, parent: object) -> None:
    """A scope is listed with GET {parent}/operations: only where the API publishes `list`."""
    if not isinstance(parent, str):
        raise ConfigError(f"{ENV_WATCH_SCOPES}: parent must be a string")
    try:
        ref = build_ref(f"{parent}/operations/scope" if parent else "operations/scope", service)
    except InvalidArgument as exc:
        raise ConfigError(f"{ENV_WATCH_SCOPES}: {parent!r} of {service!r}: {exc.message}") from exc
    if not ref.can("list"):
        raise ConfigError(f"{ENV_WATCH_SCOPES}: {ref.cannot('list')}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low:g} and {high:g}")
    return value
