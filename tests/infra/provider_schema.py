"""The google provider's resource schemas, as far as infra/ uses them, checked offline.

`python -m tests.infra.provider_schema WHEEL` regenerates google_provider_schema.json
from the prebuilt cdktf provider package (`pip download --no-deps
cdktf-cdktf-provider-google==16.12.1`, ~50 MB: google provider 6.50.0): its jsii
assembly describes every resource's arguments and nested blocks, each linked to
its Terraform Registry anchor (the argument's Terraform name). Only the resource
types infra/ uses are kept, so the test reads a small file and downloads nothing.
"""
from __future__ import annotations

import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "google_provider_schema.json"
INFRA = HERE.parents[1] / "infra"
_LINK = re.compile(r"registry\.terraform\.io/providers/hashicorp/google/([\d.]+)/docs/(resources|data-sources)/(\w+)"
                   r"(?:#(\w+))?")


def used_types() -> set[str]:
    """`resource "google_…"` and `data "google_…"` types in every .tf under infra/."""
    found = set()
    for path in INFRA.rglob("*.tf"):
        for kind, rtype in re.findall(r'^(resource|data)\s+"(google_\w+)"', path.read_text(), re.M):
            found.add(f"{'data.' if kind == 'data' else ''}{rtype}")
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _struct_fqn(type_ref: dict) -> str | None:
    """The struct a property holds (itself, a list/map of it, or a union with IResolvable)."""
    if "fqn" in type_ref:
        return type_ref["fqn"]
    if "collection" in type_ref:
        return _struct_fqn(type_ref["collection"]["elementtype"])
    for option in (type_ref.get("union") or {}).get("types", []):
        found = _struct_fqn(option)
        if found and found.startswith("@cdktf/provider-google."):
            return found
    return None


def _schema(types: dict, fqn: str, depth: int = 0) -> dict:
    """{terraform_name: nested schema or None} for a Config / block struct."""
    out: dict = {}
    for prop in types[fqn].get("properties", []):
        docs = " ".join(str(v) for v in (prop.get("docs") or {}).values())
        anchors = [m[3] for m in _LINK.findall(docs) if m[3]]
        name = anchors[-1] if anchors else _snake(prop["name"])
        nested = _struct_fqn(prop["type"])
        is_block = nested and nested in types and types[nested].get("kind") == "interface" \
            and nested.startswith("@cdktf/provider-google.") and depth < 12
        out[name] = _schema(types, nested, depth + 1) if is_block else None
    return out


def extract(wheel: Path, wanted: set[str]) -> dict:
    with zipfile.ZipFile(wheel) as outer:
        [member] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        with outer.open(member) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tgz:
            assembly = json.load(tgz.extractfile("package/.jsii"))
    types = assembly["types"]
    found: dict = {}
    version = None
    for fqn, spec in types.items():
        if spec.get("kind") != "class" or not fqn.startswith("@cdktf/provider-google."):
            continue
        match = _LINK.search(" ".join(str(v) for v in (spec.get("docs") or {}).values()))
        if not match:
            continue
        version = match[1]
        key = ("data." if match[2] == "data-sources" else "") + "google_" + match[3]
        config = fqn + "Config"
        if key in wanted and config in types:
            found[key] = _schema(types, config)
    return {"provider": "hashicorp/google", "version": version, "resources": dict(sorted(found.items()))}


if __name__ == "__main__":
    wanted = used_types() | set(sys.argv[2:])
    schema = extract(Path(sys.argv[1]), wanted)
    missing = wanted - set(schema["resources"])
    SCHEMA_FILE.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{len(schema['resources'])} resource types from google {schema['version']}; missing: {sorted(missing)}")
