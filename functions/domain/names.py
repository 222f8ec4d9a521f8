"""Operation names, services and endpoints, checked against Google's published surface.

The catalog (functions/domain/catalog.py, generated from Google's discovery
documents) says which names each API's operations.get accepts and which
hosts serve it. Security rule (contract §3): a request only goes to a host
taken from the catalog (a published host, or LOCATION-HOST for the APIs the
overrides name, with a validated location), checked as a DNS name; never one
copied from input.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from functions.domain.catalog import Api, Form, load, version_rank
from functions.domain.errors import InvalidArgument

MAX_NAME_BYTES = 1500  # Firestore compares indexed strings on their first 1,500 bytes.
MAX_LABEL = 63  # RFC 1035: a DNS label
MAX_HOST = 253

# Letters, digits, - _ . ~ and the parentheses of Firestore's "(default)" database.
_SEGMENT = re.compile(r"^[A-Za-z0-9(][A-Za-z0-9_~.()-]{0,254}\Z")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]\Z")
_OPERATION_ID = re.compile(r"^[0-9a-f]{32}\Z")
_VERSION = re.compile(r"^v[0-9]{1,2}(?:(?:p[0-9]{1,2})?(?:alpha|beta)[0-9]{0,2})?\Z")
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")


def _registry() -> dict[str, Api]:
    """Short name → catalog Api: the API's own name and its host's first label (translate, translation)."""
    apis = dict(load().apis)
    for api in load().apis.values():
        apis.setdefault(api.host.split(".")[0], api)
    return apis


REGISTRY: dict[str, Api] = _registry()


@dataclass(frozen=True)
class OperationRef:
    """A validated operation: what to GET and where."""

    name: str
    service: str  # the API's canonical host
    api_version: str
    endpoint: str  # host actually called (regional where needed)
    prefix: str = ""  # URL path before the name; "" means the catalog form's (usually the version)

    @property
    def id(self) -> str:
        return operation_id(self.service, self.name)

    @property
    def path(self) -> str:
        """`VERSION/NAME` for nearly every API (`dns/v1/NAME`, `v1/operations/NAME` for a few)."""
        prefix = self.prefix or _prefix_of(self.service, self.api_version, self.name)
        return f"{prefix}/{self.name}"

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}/{self.path}"

    @property
    def location(self) -> str | None:
        return location_of(self.name)

    @property
    def form(self) -> Form | None:
        return form_of(self.service, self.api_version, self.name)

    def can(self, method: str) -> bool:
        """Whether the API publishes `method` (cancel, list, delete) for this operation."""
        form = self.form
        return form is not None and form.can(method)

    def cannot(self, method: str) -> str | None:
        """Why `method` is not published for this operation (a FAILED_PRECONDITION message), or None."""
        if self.can(method):
            return None
        form = self.form
        what = f"{form.api} {form.version} ({form.readable})" if form else self.service
        return f"{what} publishes no :{method} for its operations, so lrowatch cannot {method} {self.name[:200]}"


def operation_id(service: str, name: str) -> str:
    """Stable record id: names hold slashes and may be long, so ids are digests."""
    return hashlib.sha256(f"{service}\n{name}".encode()).hexdigest()[:32]


def is_operation_id(value: object) -> bool:
    """True for a record id as `operation_id` makes them (32 lowercase hex)."""
    return isinstance(value, str) and bool(_OPERATION_ID.match(value))


def is_api_version(value: object) -> bool:
    """True for an API version segment such as v1, v1beta2 or v3p1beta1."""
    return isinstance(value, str) and bool(_VERSION.match(value))


def resolve_service(value: object) -> Api:
    """`vision` or `vision.googleapis.com` (any host of the API's versions) → its catalog entry."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("service must be a Google API host such as documentai.googleapis.com")
    catalog = load()
    api = catalog.api(value)
    if api is None and value.endswith(".googleapis.com"):
        found = catalog.hosts.get(value)
        api = found[0] if found is not None and found[1] is None else None
    if api is None:
        raise InvalidArgument(f"service {value[:100]!r} publishes no long-running operations; "
                              "GET /services lists the APIs that do")
    return api


def validate_name(name: object) -> str:
    """The shape every operation name shares; which names exist is the catalog's to say."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("name must be an operation name such as projects/P/locations/L/operations/ID")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"name is longer than {MAX_NAME_BYTES} bytes")
    for segment in name.split("/"):
        if not _SEGMENT.match(segment) or ".." in segment:
            raise InvalidArgument(
                "name has an invalid segment; names use letters, digits and - _ . ~ ( ) between slashes"
            )
    location = location_of(name)
    if location is not None and not _LOCATION.match(location):
        raise InvalidArgument("name has an invalid location")
    return name


def location_of(name: str) -> str | None:
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("locations", "regions"):
            return parts[i + 1]
    return None


def validate_version(value: object, api: Api) -> str | None:
    """An explicit version the API publishes, or None to let the name choose."""
    if value is None:
        return None
    if not is_api_version(value):
        raise InvalidArgument("api_version must look like v1, v1beta2 or v3p1beta1")
    if value not in api.versions:
        raise InvalidArgument(f"{api.name} has no operations in {value}; its versions are "
                              f"{', '.join(api.versions)}")
    return value


def choose_form(api: Api, name: str, version: str | None = None) -> Form:
    """The published form this name belongs to; api_version picks among versions.

    Several forms may match: a literal pattern beats a catch-all (Speech v1's
    `^.*$`); then, without api_version, a stable version beats a beta or
    alpha one; among equals the version Google's directory marks preferred
    wins, then the newest.
    """
    candidates = [f for f in api.forms_of(version) if f.matches(name)]
    if not candidates:
        closest = closest_form(api.forms_of(version), name)
        raise InvalidArgument(f"{api.name} {closest.version} names look like {closest.readable}; "
                              f"{name[:120]!r} is not one of them")
    return max(candidates, key=lambda f: (f.specificity[0], version_rank(f.version)[0],
                                          f.version == api.preferred, version_rank(f.version), f.specificity))


def closest_form(forms: list[Form], name: str) -> Form:
    """The form whose template shares most literal segments with the name, in place."""
    segments = name.split("/")

    def score(form: Form) -> tuple:
        parts = form.template.split("/")
        same = sum(1 for a, b in zip(parts, segments) if not a.startswith("{") and a == b)
        return (same, -abs(len(parts) - len(segments)), version_rank(form.version))

    return max(forms, key=score)


@lru_cache(maxsize=8192)  # every record's url and capability asks; pollers ask for the same ones
def form_of(service: str, version: str, name: str) -> Form | None:
    try:
        api = resolve_service(service)
        return choose_form(api, name, version if version in api.versions else None)
    except InvalidArgument:
        return None


def _prefix_of(service: str, version: str, name: str) -> str:
    prefixes = _prefixes(service, version)
    if len(prefixes) == 1:  # nearly every API/version: no name matching needed on the poll path
        return prefixes[0]
    form = form_of(service, version, name)
    return form.prefix if form is not None and form.version == version else version


@lru_cache(maxsize=1024)
def _prefixes(service: str, version: str) -> tuple[str, ...]:
    try:
        return tuple(sorted({f.prefix for f in resolve_service(service).forms_of(version)})) or (version,)
    except InvalidArgument:
        return (version,)


def check_host(host: str) -> str:
    """A DNS name: labels of 1-63 letters, digits and hyphens; at most 253 characters."""
    labels = host.split(".")
    if len(host) > MAX_HOST or not all(len(label) <= MAX_LABEL and _DNS_LABEL.match(label) for label in labels):
        raise InvalidArgument(f"the endpoint {host[:120]!r} would not be a valid DNS name "
                              f"(labels of at most {MAX_LABEL} characters)")
    return host


def default_endpoint(api: Api, form: Form, name: str) -> str:
    """The documented default for a name+service submission (docs/catalog.md):
    LOCATION-HOST where the API serves its locations that way, else the global host."""
    location = location_of(name)
    if location and location != "global":
        prefixed = f"{location}-{form.host}"
        if api.location_prefixed or prefixed in api.endpoints.get(location, ()):
            return check_host(prefixed)
    return check_host(form.host)


def endpoint_for(service: Api, name: str) -> str:
    """The default host for a name (kept for callers of the registry-era function)."""
    return default_endpoint(service, choose_form(service, name), name)


def build_ref(name: object, service: object, api_version: object = None) -> OperationRef:
    api = resolve_service(service)
    valid_name = validate_name(name)
    form = choose_form(api, valid_name, validate_version(api_version, api))
    return OperationRef(name=valid_name, service=api.host, api_version=form.version,
                        endpoint=default_endpoint(api, form, valid_name), prefix=form.prefix)


_URL = re.compile(r"^https://(?P<host>[a-z0-9.-]{1,253})/(?P<path>[A-Za-z0-9_~.()/-]+)\Z")


def parse_url(url: object) -> OperationRef:
    """A doc-style operation URL, parsed strictly and rebuilt from the catalog.

    The host must be one the API publishes (or LOCATION-HOST where the
    overrides say so), and a regional host must serve the name's location, so
    userinfo, ports, look-alike hosts, IPs, encodings, queries and fragments
    all fail the grammar or the catalog look-up.
    """
    if not isinstance(url, str) or len(url) > MAX_NAME_BYTES + 300:
        raise InvalidArgument("url must be an https://HOST/VERSION/NAME string")
    match = _URL.match(url)
    if not match:
        raise InvalidArgument(
            "url must be https://HOST/VERSION/NAME with no port, userinfo, query, fragment or encoded characters"
        )
    host, path = match["host"], match["path"]
    found = load().by_host(host)
    if found is None:
        raise InvalidArgument(f"url host {host!r} is not a published endpoint of an API with long-running "
                              "operations (GET /services lists them)")
    api, host_location = found
    forms = [f for f in api.forms if path.startswith(f.prefix + "/")
             and (host_location is not None or f.host == host)]
    if not forms:
        raise InvalidArgument(f"url path must be VERSION/NAME for {api.name}; versions: {', '.join(api.versions)}")
    prefix = max((f.prefix for f in forms), key=len)
    name = validate_name(path[len(prefix) + 1:])
    candidates = [f for f in forms if f.prefix == prefix and f.matches(name)]
    if not candidates:
        closest = closest_form([f for f in forms if f.prefix == prefix], name)
        raise InvalidArgument(f"{api.name} {closest.version} names look like {closest.readable}; "
                              f"{name[:120]!r} is not one of them")
    form = max(candidates, key=lambda f: f.specificity)
    if host_location is not None and location_of(name) != host_location:
        raise InvalidArgument(f"url host {host!r} serves location {host_location}, but the name is in "
                              f"{location_of(name) or 'no location'}")
    return OperationRef(name=name, service=api.host, api_version=form.version,
                        endpoint=check_host(host), prefix=form.prefix)
