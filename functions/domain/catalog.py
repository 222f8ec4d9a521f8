"""Google's published long-running-operation surface, read from catalog.json.

catalog.json is generated from Google's discovery documents by `make catalog`
(tools/catalog.py) and checked in; this module only reads it. An API has
forms: for one version, the URL prefix its operations.get sits under, the
operation-name pattern it accepts, and which of cancel/list/delete exist.
Pure: no I/O beyond reading the packaged file once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from functions.domain.catalog_overrides import LOCATION_PREFIXED_HOSTS

CATALOG_FILE = Path(__file__).with_name("catalog.json")
# Short placeholders for refusals ("names look like locations/{L}/operations/{ID}").
_PLACEHOLDERS = {"projectsId": "P", "locationsId": "L", "operationsId": "ID", "organizationsId": "O",
                 "foldersId": "F", "regionsId": "R", "name": "ID"}
_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\}")
_CATCH_ALL = {"^.*$", "^.+$"}


@dataclass(frozen=True)
class Form:
    """One published operations.get: `https://HOST/PREFIX/NAME` for names matching `pattern`."""

    api: str
    version: str
    host: str
    prefix: str
    template: str
    pattern: str
    methods: frozenset = frozenset()
    _regex: re.Pattern = field(default=None, repr=False, compare=False)

    def matches(self, name: str) -> bool:
        return bool(self._regex.match(name))

    def can(self, method: str) -> bool:
        """cancel, list or delete; get always exists."""
        return method in self.methods

    @property
    def readable(self) -> str:
        """The template with short placeholders: locations/{L}/operations/{ID}."""
        return _VARIABLE.sub(lambda m: "{" + _PLACEHOLDERS.get(m[1], m[1].removesuffix("Id").upper()) + "}",
                             self.template)

    @property
    def specificity(self) -> tuple:
        """Which of several matching forms is meant: a literal pattern beats a catch-all."""
        literals = sum(1 for s in self.template.split("/") if not s.startswith("{"))
        return (self.pattern not in _CATCH_ALL, literals, len(self.prefix))


@dataclass(frozen=True)
class Api:
    name: str  # short name, e.g. vision
    host: str  # canonical global host, e.g. vision.googleapis.com
    versions: tuple[str, ...]
    preferred: str | None
    forms: tuple[Form, ...]
    endpoints: dict  # location → published regional hosts

    @property
    def location_prefixed(self) -> bool:
        """Serves LOCATION-HOST for any of its locations (catalog_overrides)."""
        return self.name in LOCATION_PREFIXED_HOSTS

    def forms_of(self, version: str | None = None) -> list[Form]:
        return [f for f in self.forms if version is None or f.version == version]

    def can(self, method: str) -> bool:
        return any(f.can(method) for f in self.forms)

    def to_json(self) -> dict:
        """The view served by GET /services and `lrowatch services`."""
        return {
            "name": self.name,
            "host": self.host,
            "versions": list(self.versions),
            "preferred_version": self.preferred,
            "forms": [{"version": f.version, "host": f.host, "pattern": f.readable,
                       "url": f"https://{f.host}/{f.prefix}/{f.readable}",
                       "cancel": f.can("cancel"), "list": f.can("list"), "delete": f.can("delete")}
                      for f in self.forms],
            "regional_endpoints": {loc: list(hosts) for loc, hosts in self.endpoints.items()},
            "location_prefixed_hosts": self.location_prefixed,
        }


@dataclass(frozen=True)
class Catalog:
    source: str
    apis: dict  # short name → Api
    excluded: tuple  # published forms not addressable by name, with reasons
    hosts: dict = field(default_factory=dict)  # every published host → (Api, location | None)

    def api(self, name: str) -> Api | None:
        """By short name: the API's own (translate) or its host's first label (translation)."""
        found = self.apis.get(name)
        if found is None and "." not in name:
            host = self.hosts.get(f"{name}.googleapis.com")
            found = host[0] if host is not None and host[1] is None else None
        return found

    def by_host(self, host: str) -> tuple[Api, str | None] | None:
        """A published host: the API it serves and, for a regional endpoint, its location."""
        found = self.hosts.get(host)
        if found is not None:
            return found
        # LOCATION-HOST for the APIs that serve every location that way (overrides).
        location, _, rest = host.partition("-")
        while rest:
            api = self.hosts.get(rest)
            if api is not None and api[1] is None and api[0].location_prefixed and rest == api[0].host:
                return api[0], location
            more, _, rest = rest.partition("-")
            location = f"{location}-{more}"
        return None

    @property
    def form_count(self) -> int:
        return sum(len(a.forms) for a in self.apis.values())

    def to_json(self) -> dict:
        """The whole published surface, as GET /services and `lrowatch services --json` show it."""
        return {"source": self.source, "apis": [a.to_json() for a in self.apis.values()],
                "excluded": list(self.excluded)}


def _load_api(name: str, raw: dict) -> Api:
    forms = tuple(
        Form(api=name, version=f["version"], host=f.get("host", raw["host"]), prefix=f["prefix"],
             template=f["template"], pattern=f["pattern"], methods=frozenset(f["methods"]),
             _regex=re.compile(f["pattern"].replace("$", r"\Z")))
        for f in raw["forms"])
    endpoints = {loc: tuple(hosts) for loc, hosts in raw["endpoints"].items()}
    return Api(name, raw["host"], tuple(raw["versions"]), raw.get("preferred"), forms, endpoints)


def parse(text: str) -> Catalog:
    raw = json.loads(text)
    apis = {name: _load_api(name, api) for name, api in raw["apis"].items()}
    hosts: dict[str, tuple[Api, str | None]] = {}
    for api in apis.values():
        for form in api.forms:
            hosts[form.host] = (api, None)
    for api in apis.values():
        for location, regional in api.endpoints.items():
            for host in regional:
                hosts.setdefault(host, (api, location))
    return Catalog(raw["source"], apis, tuple(raw["excluded"]), hosts)


@lru_cache(maxsize=1)
def load() -> Catalog:
    return parse(CATALOG_FILE.read_text(encoding="utf-8"))


def version_rank(version: str) -> tuple:
    """Stable before beta before alpha; then the higher number (v2 > v1, v1beta2 > v1beta1)."""
    m = re.match(r"^v(\d+)(?:p(\d+))?(alpha|beta)?(\d*)", version)
    if not m:
        return (0,)
    stage = {None: 2, "beta": 1, "alpha": 0}[m[3]]
    return (stage, int(m[1]), int(m[2] or 0), int(m[4] or 0))


def example_name(form: Form, location: str = "us-central1", op_id: str = "bc4e1d412863e626") -> str:
    """A realistic name for a form: fills its template, then satisfies any literal in its pattern."""
    values = {"projectsId": "my-project", "locationsId": location, "regionsId": location,
              "zonesId": f"{location}-a", "organizationsId": "123456789012", "foldersId": "345678901234",
              "databasesId": "(default)", "appsId": "my-project", "operationsId": op_id, "name": op_id}
    name = _VARIABLE.sub(lambda m: values.get(m[1], f"my-{m[1].removesuffix('Id').lower()}"), form.template)
    if not form.matches(name):  # e.g. ^projects/[^/]+/locations/global/operations/[^/]+$
        name = _VARIABLE.sub(lambda m: values.get(m[1], f"my-{m[1].removesuffix('Id').lower()}")
                             if m[1] != "locationsId" else "global", form.template)
    return name


def iter_forms(catalog: Catalog | None = None) -> Iterable[Form]:
    for api in (catalog or load()).apis.values():
        yield from api.forms
