"""Watch scopes on the real Firestore emulator and simulator: each scope on its own, a failing
listing retried next run, a listing cut off by the budget going on where it stopped."""
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from functions.adapters.firestore_leases import FirestoreLeases
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.operations_api import OperationsApi
from functions.config import Settings
from functions.services import discovery as discovery_module
from functions.services.discovery import Discovery

DOCAI = "documentai.googleapis.com"


@pytest.fixture
def env(emulators, sim, hostile, project_id):
    settings = Settings(project=project_id, api_base_url=hostile.base_url)
    store = FirestoreStore(project_id, settings.collection)
    return settings, store, FirestoreLeases(store, settings.leases_collection), \
        OperationsApi(hostile.base_url, timeout_s=2), sim


@pytest.mark.parametrize("mode", ["nonjson", "reset", "array", "deep"])
def test_a_failing_scope_is_logged_and_the_next_scope_is_still_listed(env, mode, caplog):
    settings, store, leases, api, sim = env
    for _ in range(2):
        sim.create(kind="documentai", project="779", location="us", running_s=60)
    scopes = ((DOCAI, f"projects/hostile-{mode}-1/locations/us", ""), (DOCAI, "projects/779/locations/us", ""))
    discovery = Discovery(replace(settings, watch_scopes=scopes), store, leases, api)
    summary = discovery.run("run-a", stop_at=float("inf"))
    assert (summary.scopes_listed, summary.scopes_failed, summary.tracked) == (2, 1, 2)
    assert "watch scope listing failed" in caplog.text
    # The failed scope is free for the next run; the listed one waits for its interval.
    again = discovery.run("run-b", stop_at=float("inf"))
    assert (again.scopes_listed, again.scopes_failed) == (1, 1)


def test_a_listing_cut_off_by_the_budget_goes_on_from_its_page_token(env, monkeypatch):
    settings, store, leases, api, sim = env
    monkeypatch.setattr(discovery_module, "PAGE_SIZE", 2)
    for _ in range(5):
        sim.create(kind="documentai", project="780", location="us", running_s=60)
    watched = replace(settings, watch_scopes=((DOCAI, "projects/780/locations/us", ""),))
    ticks = itertools.count()
    # run() looks at the clock once, then once before each page: stop after one page.
    first = Discovery(watched, store, leases, api, monotonic=lambda: next(ticks)).run("run-a", stop_at=2)
    assert (first.found, first.tracked) == (2, 2)
    rest = Discovery(watched, store, leases, api).run("run-b", stop_at=float("inf"))
    assert (rest.found, rest.tracked) == (3, 3)  # the pages after the first, not the first again
