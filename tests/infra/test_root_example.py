"""infra/ is a root example around the reusable module infra/modules/lrowatch: every
root input reaches the module, the module declares it, every module output is
passed on, and both pin the same provider range."""
from __future__ import annotations

import re

from tests.infra.test_terraform_wiring import INFRA, ROOT, Infra

ROOT_EXAMPLE = Infra(ROOT / "infra")
MODULE = Infra(INFRA)


def _module_block() -> dict:
    import hcl2

    from tests.infra.test_terraform_wiring import _clean

    doc = _clean(hcl2.loads((ROOT / "infra" / "main.tf").read_text()))
    [entry] = doc["module"]
    return entry["lrowatch"]


def test_the_root_calls_the_module_and_passes_every_root_input_to_the_same_name():
    call = _module_block()
    assert call["source"] == "./modules/lrowatch"
    passed = {k: v for k, v in call.items() if k != "source"}
    assert set(passed) == set(ROOT_EXAMPLE.variables)
    assert all(value == f"${{var.{name}}}" for name, value in passed.items())
    assert set(passed) <= set(MODULE.variables)


def test_root_defaults_are_the_modules():
    for name, spec in ROOT_EXAMPLE.variables.items():
        if "default" in spec or "default" in MODULE.variables[name]:
            assert spec.get("default") == MODULE.variables[name].get("default"), name


def test_every_module_output_is_an_output_of_the_root_example():
    assert set(ROOT_EXAMPLE.outputs) == set(MODULE.outputs)
    for name, spec in ROOT_EXAMPLE.outputs.items():
        assert spec["value"] == f"${{module.lrowatch.{name}}}"


def test_the_root_and_the_module_pin_the_same_provider_range_and_only_the_root_configures_it():
    def pins(path):
        return re.findall(r'source\s*=\s*"([^"]+)"\s*\n\s*version\s*=\s*"([^"]+)"', path.read_text())

    assert pins(ROOT / "infra" / "main.tf") == pins(INFRA / "versions.tf")
    assert "provider \"google\"" not in "".join(p.read_text() for p in INFRA.glob("*.tf"))
    assert not ROOT_EXAMPLE.resources  # the root example only calls the module
