"""Google's whole published surface through the real processes (issue 9).

One local stack (emulators, simulator, the four functions as processes) for
the module. The sweep submits one realistic name for every catalog form, by
name+service and by URL, through the real `submit` process; the sample polls
more than a hundred of them end to end, every family and endpoint style, and
checks each GET landed at /PREFIX/NAME on the right host.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from functions.domain.catalog import Form, example_name, iter_forms, load
from functions.domain.names import location_of
from functions.simulator.model import family_of

FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}
VISION_SEED = "https://vision.googleapis.com/v1/locations/us-west1/operations/bc4e1d412863e626"
DOCAI_SEED = "https://us-documentai.googleapis.com/v1/projects/123/locations/us/operations/bc4e1d412863e626"
MIN_ACCEPTED = 0.95


def op_id(*parts: str) -> str:
    """A distinct, realistic operation id per form (forms of two versions may share a pattern)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def form_key(form: Form) -> str:
    return f"{form.api} {form.version} {form.prefix}/{form.template}"


def submit_all(stack, bodies: list[dict]) -> list[requests.Response]:
    url = f"{stack.urls['submit']}/operations"

    def one(body):
        return requests.post(url, json=body, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:  # one process, many requests
        return list(pool.map(one, bodies))


def test_every_published_form_is_accepted_by_name_and_by_url(stack, capsys):
    forms = list(iter_forms())
    by_name, by_url = [], []
    for form in forms:
        name = example_name(form, op_id=op_id(form_key(form), "name"))
        by_name.append({"name": name, "service": form.api, "api_version": form.version})
        url_name = example_name(form, op_id=op_id(form_key(form), "url"))
        by_url.append({"url": f"https://{form.host}/{form.prefix}/{url_name}"})
    results = {"name+service": submit_all(stack, by_name), "url": submit_all(stack, by_url)}

    report, rates = [], {}
    for style, responses in results.items():
        refused = [(form_key(f), r.status_code, r.json().get("error", {}).get("message", r.text[:200]))
                   for f, r in zip(forms, responses) if r.status_code not in (200, 201)]
        rates[style] = 1 - len(refused) / len(forms)
        report.append(f"{style}: {len(forms) - len(refused)} of {len(forms)} accepted ({rates[style]:.1%})")
        report += [f"  refused {key}: {status} {message}" for key, status, message in refused]
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert all(rate >= MIN_ACCEPTED for rate in rates.values()), "\n".join(report)


def sample() -> list[tuple[Form, str, str]]:
    """≥ 100 (form, host, name): every metadata family, every endpoint style, both seeds."""
    catalog = load()
    chosen: list[tuple[Form, str, str]] = []
    styles_seen: set[str] = set()
    for i, form in enumerate(iter_forms(catalog)):
        api = catalog.apis[form.api]
        family = family_of(form.api)
        if family == "generic" and i % 5 and form.api not in ("speech", "bigtableadmin", "dataproc", "dns"):
            continue
        if family == "vertex" and i % 20:
            continue
        host, location = form.host, "us-central1"
        regional = sorted(api.endpoints.items())
        if "{locationsId}" in form.template and (regional or api.location_prefixed):
            # Alternate the published regional styles: LOCATION-HOST and HOST.LOCATION.rep.
            styles = {("rep" if ".rep." in h else "prefixed"): (loc, h) for loc, hosts in regional for h in hosts}
            if api.location_prefixed:
                styles.setdefault("prefixed", ("us", f"us-{form.host}"))
            style = sorted(styles)[len(chosen) % len(styles)]
            location, host = styles[style]
            styles_seen.add(style)
        name = example_name(form, location=location, op_id=op_id(form_key(form), "poll"))
        if location_of(name) != location:  # a pattern fixed to locations/global: the global host
            host = form.host
        if form.matches(name):
            chosen.append((form, host, name))
    assert {"rep", "prefixed"} <= styles_seen
    return chosen


def test_a_sample_of_forms_is_polled_end_to_end_on_the_right_host(stack, sim):
    picked = sample()
    families = {family_of(form.api) for form, _, _ in picked}
    assert len(picked) >= 100 and families == {"vision", "documentai", "vertex", "firestore", "generic"}
    seeds = [VISION_SEED, DOCAI_SEED]
    scripts = [{"kind": family_of(form.api), "host": host, "name": name, "version": form.version,
                "running_s": 0, "items": 3, "failed_items": 1} for form, host, name in picked]
    scripts += [{"kind": "vision", "host": "vision.googleapis.com", "running_s": 0,
                 "name": VISION_SEED.split("/v1/", 1)[1]},
                {"kind": "documentai", "host": "us-documentai.googleapis.com", "running_s": 0,
                 "name": DOCAI_SEED.split("/v1/", 1)[1]}]
    created = sim.create_many(scripts)
    tap = stack.topology.create_pull_subscription(stack.settings.events_topic, "tap-catalog-events")
    urls = [op["url"] for op in created]
    assert urls[-2:] == seeds
    responses = submit_all(stack, [{"url": url, "policy": FAST} for url in urls])
    assert [r.status_code for r in responses] == [201] * len(urls), [r.text for r in responses if r.status_code != 201]
    ids = {r.json()["id"]: url for r, url in zip(responses, urls)}

    for _ in range(10):  # one or two runs normally; more only on a loaded machine
        stack.poll(budget_s=20, timeout=180)
        states = {i: requests.get(f"{stack.urls['submit']}/operations/{i}", timeout=30).json()["state"] for i in ids}
        if all(s == "SUCCEEDED" for s in states.values()):
            break
    not_done = {ids[i]: s for i, s in states.items() if s != "SUCCEEDED"}
    assert not not_done, json.dumps(not_done, indent=1)[:3000] + stack.log_tails()

    fetched = {entry["path"] for entry in sim.requests(limit=20_000) if entry["method"] == "GET"}
    missing = [url for url in urls if "/" + url.removeprefix("https://") not in fetched]
    assert not missing, missing[:20]

    finished = set()
    for _ in range(30):
        for message in stack.topology.pull_all(tap, timeout=2):
            event = message.json()
            if event["type"] == "lro.state_changed" and event["state"] == "SUCCEEDED":
                finished.add(event["operation"]["id"])
        if finished >= set(ids):
            break
    assert finished >= set(ids), sorted(set(ids) - finished)[:20]
