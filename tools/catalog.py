"""Generate functions/domain/catalog.json from Google's discovery documents.

Build-time only: downloads a pinned google-api-python-client wheel with
`pip download --no-deps`, reads the discovery documents it bundles
(`googleapiclient/discovery_cache/documents/*.json`) straight out of the zip,
and writes a compact, deterministic catalog. The package is never installed
or imported, so nothing of it reaches the deployed functions.

    python -m tools.catalog            # regenerate the committed catalog
    python -m tools.catalog --check    # exit 1 if the committed one differs
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

PACKAGE = "google-api-python-client"
VERSION = "2.202.0"  # bump to pick up newly published APIs (docs/catalog.md)
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "catalog"
OUTPUT = ROOT / "functions" / "domain" / "catalog.json"
DOCUMENTS = "googleapiclient/discovery_cache/documents/"
# The fields of google.longrunning.Operation: a get returning anything else is not an LRO.
OPERATION_FIELDS = {"name", "done", "error", "metadata", "response"}
CAPABILITIES = ("cancel", "delete", "list")


def wheel(version: str = VERSION, cache: Path = CACHE) -> Path:
    """The pinned wheel, downloaded once into the cache."""
    found = sorted(cache.glob(f"google_api_python_client-{version}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "-d", str(cache), f"{PACKAGE}=={version}"], check=True)
        found = sorted(cache.glob(f"google_api_python_client-{version}-*.whl"))
    return found[0]


def documents(path: Path) -> Iterator[dict]:
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            if member.startswith(DOCUMENTS) and member.endswith(".json"):
                yield json.loads(archive.read(member))


def _resources(resources: dict) -> Iterator[tuple[str, dict]]:
    for key in sorted(resources):
        yield key, resources[key]
        yield from _resources(resources[key].get("resources") or {})


def operation_forms(doc: dict) -> tuple[list[dict], list[dict]]:
    """(forms, excluded): every operations.get returning a google.longrunning.Operation."""
    schemas = doc.get("schemas") or {}
    forms, excluded = [], []
    for key, resource in _resources(doc.get("resources") or {}):
        methods = resource.get("methods") or {}
        get = methods.get("get")
        if key != "operations" or not get:
            continue
        schema = schemas.get((get.get("response") or {}).get("$ref"), {})
        if not OPERATION_FIELDS <= set(schema.get("properties") or {}):
            continue
        form = _form(doc, get)
        entry = {"version": doc["version"], **(form if isinstance(form, dict) else {"path": get["path"]})}
        entry["methods"] = [m for m in CAPABILITIES if m in methods]
        if isinstance(form, str):
            excluded.append({**entry, "reason": form})
        else:
            forms.append(entry)
    return forms, excluded


def _form(doc: dict, get: dict) -> dict | str:
    """URL prefix, name template and name pattern; a reason string when not addressable by name."""
    path = (doc.get("servicePath") or "") + get["path"]
    flat = (doc.get("servicePath") or "") + (get.get("flatPath") or get["path"])
    params = get.get("parameters") or {}
    for marker in ("{+name}", "{name}"):
        if path.endswith(marker):
            prefix = path[: -len(marker)].rstrip("/")
            if not flat.startswith(prefix + "/"):
                return "flatPath does not extend the path"
            template = flat[len(prefix) + 1:]
            pattern = (params.get("name") or {}).get("pattern")
            if pattern is None:
                pattern = "^[^/]+$" if marker == "{name}" else "^.+$"
            return {"prefix": prefix, "template": template, "pattern": pattern}
    # No name parameter: a name made of the path's own segments (App Engine's apps/A/operations/O).
    version = doc["version"]
    if path.startswith(version + "/") and "/operations/{" in path and all(
            (params.get(p[1:-1]) or {}).get("location") == "path"
            for p in path.split("/") if p.startswith("{")):
        template = path[len(version) + 1:]
        pattern = "^" + "/".join("[^/]+" if s.startswith("{") else s for s in template.split("/")) + "$"
        return {"prefix": version, "template": template, "pattern": pattern}
    return "addressed by its path parameters, not by the operation's name"


def endpoints(doc: dict) -> dict[str, list[str]]:
    """Published regional endpoints by location (both LOCATION-HOST and HOST.LOCATION.rep styles)."""
    result: dict[str, set[str]] = {}
    for endpoint in doc.get("endpoints") or []:
        url, location = endpoint.get("endpointUrl", ""), endpoint.get("location")
        host = url.removeprefix("https://").rstrip("/")
        if location and host and "/" not in host:
            result.setdefault(location, set()).add(host)
    return {k: sorted(v) for k, v in result.items()}


def build(docs: Iterator[dict], source: str) -> dict:
    apis: dict[str, dict] = {}
    excluded: list[dict] = []
    count = 0
    preferred: dict[str, str] = {}
    for doc in docs:
        if doc.get("kind") == "discovery#directoryList":  # index.json: which version Google prefers
            preferred = {i["name"]: i["version"] for i in doc.get("items") or [] if i.get("preferred")}
            continue
        count += 1
        forms, skipped = operation_forms(doc)
        name = doc["name"]
        excluded += [{"api": name, **s} for s in skipped]
        if not forms:
            continue
        host = doc["rootUrl"].removeprefix("https://").rstrip("/")
        api = apis.setdefault(name, {"forms": [], "endpoints": {}})
        api["forms"] += [{**f, "host": host} for f in forms]
        for location, hosts in endpoints(doc).items():
            api["endpoints"][location] = sorted(set(api["endpoints"].get(location, [])) | set(hosts))
    owners: dict[str, str] = {}
    for name, api in apis.items():
        api["forms"].sort(key=lambda f: (f["version"], f["prefix"], f["template"]))
        api["versions"] = sorted({f["version"] for f in api["forms"]})
        if preferred.get(name) in api["versions"]:
            api["preferred"] = preferred[name]
        # The canonical host: the preferred version's, else the most common one.
        hosts = [f["host"] for f in api["forms"]]
        api["host"] = next((f["host"] for f in api["forms"] if f["version"] == api.get("preferred")),
                           max(sorted(set(hosts)), key=hosts.count))
        for form in api["forms"]:
            if form["host"] == api["host"]:
                del form["host"]  # only versions served elsewhere name their host
            elif owners.setdefault(form["host"], name) != name:
                raise SystemExit(f"{form['host']} serves two APIs: resolving by host would be ambiguous")
        if owners.setdefault(api["host"], name) != name:
            raise SystemExit(f"{api['host']} serves two APIs: resolving by host would be ambiguous")
        api["endpoints"] = dict(sorted(api["endpoints"].items()))
    return {"source": source, "documents": count, "apis": dict(sorted(apis.items())),
            "excluded": sorted(excluded, key=lambda e: (e["api"], e["version"], e["path"]))}


def render(catalog: dict) -> str:
    """One API per block and one form per line: small diffs when Google publishes."""
    lines = ["{", f' "source": {json.dumps(catalog["source"])},', f' "documents": {catalog["documents"]},',
             ' "apis": {']
    names = list(catalog["apis"])
    for i, name in enumerate(names):
        api = catalog["apis"][name]
        lines.append(f"  {json.dumps(name)}: {{")
        lines.append(f'   "host": {json.dumps(api["host"])},')
        lines.append(f'   "versions": {json.dumps(api["versions"])},')
        if "preferred" in api:
            lines.append(f'   "preferred": {json.dumps(api["preferred"])},')
        lines.append('   "forms": [')
        lines += [f"    {json.dumps(f, sort_keys=True)}," for f in api["forms"]]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("   ],")
        lines.append(f'   "endpoints": {json.dumps(api["endpoints"], sort_keys=True)}')
        lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines.append(" },")
    lines.append(' "excluded": [')
    lines += [f"  {json.dumps(e, sort_keys=True)}," for e in catalog["excluded"]]
    if catalog["excluded"]:
        lines[-1] = lines[-1].rstrip(",")
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(version: str = VERSION, cache: Path = CACHE) -> str:
    return render(build(documents(wheel(version, cache)), f"{PACKAGE}=={version}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION, help=f"{PACKAGE} version (default {VERSION})")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the output file differs")
    args = parser.parse_args(argv)
    text = generate(args.version, args.cache)
    if args.check:
        if args.output.read_text() != text:
            print(f"{args.output} is out of date: run `make catalog`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    catalog = json.loads(text)
    forms = sum(len(a["forms"]) for a in catalog["apis"].values())
    print(f"{args.output}: {len(catalog['apis'])} APIs, {forms} operation forms, "
          f"{len(catalog['excluded'])} excluded, from {catalog['documents']} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
