"""The committed catalog is exactly what the pinned discovery documents generate (issue 9).

Downloads the pinned google-api-python-client wheel once into .cache/catalog
(PyPI is reachable in CI) and reads it as a zip: nothing is installed.
"""
from __future__ import annotations

from tools import catalog as generator



def test_the_committed_catalog_matches_a_fresh_generation():
    fresh = generator.generate()
    committed = generator.OUTPUT.read_text(encoding="utf-8")
    assert fresh == committed, "functions/domain/catalog.json is out of date: run `make catalog`"
