"""Operation-name grammar, the service registry and endpoint resolution.

Security rule (contract §3): a request may only go to
`https://[REGION-]SERVICE.googleapis.com`, a host this module *builds* from a
registered service and a validated location — never one copied from input.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from functions.domain.errors import InvalidArgument

MAX_NAME_BYTES = 1500  # Firestore compares indexed strings on their first 1,500 bytes.


@dataclass(frozen=True)
class Service:
    host: str  # canonical global host, e.g. documentai.googleapis.com
    regional: bool = False  # endpoint is LOCATION-host for non-global locations
    default_version: str = "v1"


# Services whose operations lrowatch polls. Add a line to support another API.
REGISTRY: dict[str, Service] = {
    s.host.split(".")[0]: s
    for s in (
        Service("vision.googleapis.com"),
        Service("documentai.googleapis.com", regional=True),
        Service("speech.googleapis.com"),
        Service("videointelligence.googleapis.com"),
        Service("aiplatform.googleapis.com", regional=True),
        Service("translation.googleapis.com", default_version="v3"),
        Service("language.googleapis.com"),
        Service("healthcare.googleapis.com"),
        Service("file.googleapis.com"),
        Service("redis.googleapis.com"),
        Service("firestore.googleapis.com"),
        Service("contentwarehouse.googleapis.com"),
        Service("discoveryengine.googleapis.com"),
        Service("retail.googleapis.com", default_version="v2"),
        Service("dataproc.googleapis.com"),
        Service("spanner.googleapis.com"),
    )
}

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_~.-]{0,254}\Z")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]\Z")
_OPERATION_ID = re.compile(r"^[0-9a-f]{32}\Z")
_VERSION = re.compile(r"^v[0-9]{1,2}(?:(?:p[0-9]{1,2})?(?:alpha|beta)[0-9]{0,2})?\Z")


@dataclass(frozen=True)
class OperationRef:
    """A validated operation: what to GET and where."""

    name: str
    service: str  # canonical host
    api_version: str
    endpoint: str  # host actually called (regional where needed)

    @property
    def id(self) -> str:
        return operation_id(self.service, self.name)

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}/{self.api_version}/{self.name}"

    @property
    def location(self) -> str | None:
        return location_of(self.name)


def operation_id(service: str, name: str) -> str:
    """Stable record id: names hold slashes and may be long, so ids are digests."""
    return hashlib.sha256(f"{service}\n{name}".encode()).hexdigest()[:32]


def is_operation_id(value: object) -> bool:
    """True for a record id as `operation_id` makes them (32 lowercase hex)."""
    return isinstance(value, str) and bool(_OPERATION_ID.match(value))


def is_api_version(value: object) -> bool:
    """True for an API version segment such as v1, v1beta2 or v3p1beta1."""
    return isinstance(value, str) and bool(_VERSION.match(value))


def resolve_service(value: object) -> Service:
    """`vision` or `vision.googleapis.com` → the registry entry; anything else refused."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("service must be a Google API host such as documentai.googleapis.com")
    short = value[: -len(".googleapis.com")] if value.endswith(".googleapis.com") else value
    service = REGISTRY.get(short)
    if service is None or (value != short and value != service.host):
        known = ", ".join(sorted(REGISTRY))
        raise InvalidArgument(f"service {value[:100]!r} is not supported; known services: {known}")
    return service


def validate_name(name: object) -> str:
    """A resource name like `projects/P/locations/L/operations/ID`, strictly."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("name must be an operation name such as projects/P/locations/L/operations/ID")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"name is longer than {MAX_NAME_BYTES} bytes")
    segments = name.split("/")
    for segment in segments:
        if not _SEGMENT.match(segment) or ".." in segment:
            raise InvalidArgument(
                "name has an invalid segment; names use letters, digits and - _ . ~ between slashes"
            )
    if segments[0] not in ("projects", "operations"):
        raise InvalidArgument("name must start with projects/ or operations/")
    if len(segments) < 2 or segments[-2] != "operations":
        raise InvalidArgument("name must end in operations/ID")
    location = location_of(name)
    if location is not None and not _LOCATION.match(location):
        raise InvalidArgument("name has an invalid location")
    return name


def location_of(name: str) -> str | None:
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "locations":
            return parts[i + 1]
    return None


def validate_version(value: object, service: Service) -> str:
    if value is None:
        return service.default_version
    if not is_api_version(value):
        raise InvalidArgument("api_version must look like v1, v1beta2 or v3p1beta1")
    return value


def endpoint_for(service: Service, name: str) -> str:
    """The host to call: regional services use the location in the name."""
    location = location_of(name)
    if service.regional and location and location != "global":
        if not _LOCATION.match(location):
            raise InvalidArgument("name has an invalid location")
        return f"{location}-{service.host}"
    return service.host


def build_ref(name: object, service: object, api_version: object = None) -> OperationRef:
    svc = resolve_service(service)
    valid_name = validate_name(name)
    return OperationRef(
        name=valid_name,
        service=svc.host,
        api_version=validate_version(api_version, svc),
        endpoint=endpoint_for(svc, valid_name),
    )


_URL = re.compile(r"^https://(?P<host>[a-z0-9.-]+)/(?P<version>[a-z0-9]+)/(?P<name>[A-Za-z0-9_~./-]+)\Z")


def parse_url(url: object) -> OperationRef:
    """A doc-style operation URL, parsed strictly and rebuilt from the registry.

    Only the exact host lrowatch would build for that name is accepted, so
    userinfo, ports, look-alike hosts, IPs, encodings, queries and fragments
    all fail the grammar or the final equality check.
    """
    if not isinstance(url, str) or len(url) > MAX_NAME_BYTES + 200:
        raise InvalidArgument("url must be an https://SERVICE.googleapis.com/VERSION/NAME string")
    match = _URL.match(url)
    if not match:
        raise InvalidArgument(
            "url must be https://[REGION-]SERVICE.googleapis.com/VERSION/NAME with no port, "
            "userinfo, query, fragment or encoded characters"
        )
    host = match["host"]
    if not host.endswith(".googleapis.com"):
        raise InvalidArgument("url host must be a Google API host (*.googleapis.com)")
    label = host[: -len(".googleapis.com")]
    service = REGISTRY.get(label)
    if service is None and "-" in label:
        service = REGISTRY.get(label.split("-")[-1])
    if service is None:
        raise InvalidArgument(f"url host {host!r} is not a supported service")
    ref = build_ref(match["name"], service.host, match["version"])
    if ref.endpoint != host:
        raise InvalidArgument(f"url host {host!r} does not match the operation's location (expected {ref.endpoint})")
    return ref
