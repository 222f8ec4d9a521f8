"""Every resource, data source, argument and nested block in infra/ exists in the google
provider's schema (google_provider_schema.json, extracted offline by provider_schema.py
from the prebuilt cdktf provider package: google 6.50.0, inside versions.tf's range)."""
from __future__ import annotations

import json
import re

import hcl2
import pytest

from tests.infra.provider_schema import INFRA, SCHEMA_FILE, used_types
from tests.infra.test_terraform_wiring import _clean

SCHEMA = json.loads(SCHEMA_FILE.read_text())
META = {"for_each", "count", "depends_on", "lifecycle", "provider", "provisioner", "connection"}


def problems(body: dict, schema: dict, where: str) -> list[str]:
    found = []
    for key, value in body.items():
        if key in META:
            continue
        if key == "dynamic":
            for entry in value:
                for name, spec in entry.items():
                    content = spec["content"][0] if isinstance(spec["content"], list) else spec["content"]
                    found += problems({name: [content]}, schema, where)
            continue
        if key not in schema:
            found.append(f"{where}.{key}")
        elif isinstance(schema[key], dict) and isinstance(value, list):
            for block in value:
                if isinstance(block, dict):
                    found += problems(block, schema[key], f"{where}.{key}")
    return found


def declared() -> list[tuple[str, str, dict]]:
    """(type, address, body) of every google resource and data source under infra/."""
    out = []
    for path in sorted(INFRA.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        doc = _clean(hcl2.loads(path.read_text()))
        for kind, prefix in (("resource", ""), ("data", "data.")):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        if rtype.startswith("google_"):
                            out.append((prefix + rtype, f"{path.name}:{prefix}{rtype}.{name}", body))
    return out


def test_the_schema_extract_covers_every_type_infra_uses_and_matches_the_pinned_range():
    assert used_types() <= set(SCHEMA["resources"])
    versions = (INFRA / "modules" / "lrowatch" / "versions.tf").read_text()
    low, high = re.search(r'google\s*=\s*\{[^}]*version\s*=\s*">=\s*([\d.]+),\s*<\s*(\d+)"', versions, re.S).groups()
    major = int(SCHEMA["version"].split(".")[0])
    assert int(low.split(".")[0]) <= major < int(high)


@pytest.mark.parametrize("rtype, address, body", declared(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_argument_and_block_exists_in_the_provider_schema(rtype, address, body):
    assert problems(body, SCHEMA["resources"][rtype], address) == []


def test_the_check_itself_catches_an_unknown_argument_and_a_misplaced_one():
    schema = SCHEMA["resources"]["google_pubsub_subscription"]
    assert problems({"name": "x", "colour": "blue"}, schema, "s") == ["s.colour"]
    assert problems({"push_config": [{"oidc_token": [{"audiance": "x"}]}]}, schema, "s") == [
        "s.push_config.oidc_token.audiance"]
