"""Names and endpoints against Google's published surface (issue 9): the catalog decides."""
from __future__ import annotations

import pytest

from functions.domain.catalog import example_name, iter_forms, load
from functions.domain.errors import InvalidArgument
from functions.domain.names import build_ref, parse_url, resolve_service

VISION_SEED = "https://vision.googleapis.com/v1/locations/us-west1/operations/bc4e1d412863e626"
DOCAI_SEED = "https://us-documentai.googleapis.com/v1/projects/123/locations/us/operations/bc4e1d412863e626"


def test_the_vision_documentation_url_is_accepted():
    ref = parse_url(VISION_SEED)
    assert (ref.service, ref.api_version, ref.endpoint) == ("vision.googleapis.com", "v1", "vision.googleapis.com")
    assert ref.name == "locations/us-west1/operations/bc4e1d412863e626"
    assert ref.url == VISION_SEED


def test_the_document_ai_older_regional_host_keeps_working():
    ref = parse_url(DOCAI_SEED)
    assert ref.endpoint == "us-documentai.googleapis.com" and ref.url == DOCAI_SEED


@pytest.mark.parametrize("name, service, url", [
    ("projects/p/databases/(default)/operations/ASA3NDEwOTg0NjExChp0bHVhZmVkBxJsYXJ0bmVjc3Utc2Jvai1uaW1kYRQKLRI",
     "firestore", "https://firestore.googleapis.com/v1/projects/p/databases/(default)/operations/"
     "ASA3NDEwOTg0NjExChp0bHVhZmVkBxJsYXJ0bmVjc3Utc2Jvai1uaW1kYRQKLRI"),
    ("projects/p/regions/us-central1/operations/abc-123", "dataproc",
     "https://dataproc.googleapis.com/v1/projects/p/regions/us-central1/operations/abc-123"),
    ("operations/projects/p/instances/i/clusters/c/locations/us-east1-b/operations/42", "bigtableadmin",
     "https://bigtableadmin.googleapis.com/v2/operations/projects/p/instances/i/clusters/c/locations/"
     "us-east1-b/operations/42"),
    ("organizations/123/locations/us-central1/operations/op1", "assuredworkloads",
     "https://assuredworkloads.googleapis.com/v1/organizations/123/locations/us-central1/operations/op1"),
    ("folders/456/locations/global/replays/r1/operations/op-2", "policysimulator",
     "https://policysimulator.googleapis.com/v1/folders/456/locations/global/replays/r1/operations/op-2"),
    ("7612202767953098924", "speech", "https://speech.googleapis.com/v1/operations/7612202767953098924"),
    ("projects/p/locations/global/operations/op", "dns", "https://dns.googleapis.com/dns/v1/projects/p/locations/"
     "global/operations/op"),
])
def test_published_forms_the_old_registry_refused_are_accepted(name, service, url):
    ref = build_ref(name, service)
    assert ref.name == name
    if url is not None:
        assert ref.url == url
        assert parse_url(url).id == ref.id


@pytest.mark.parametrize("host", ["documentai.eu.rep.googleapis.com", "eu-documentai.googleapis.com"])
def test_both_regional_styles_are_accepted_for_document_ai(host):
    name = "projects/123/locations/eu/operations/1"
    ref = parse_url(f"https://{host}/v1/{name}")
    assert ref.endpoint == host and ref.service == "documentai.googleapis.com"


def test_a_regional_host_must_serve_the_names_location():
    with pytest.raises(InvalidArgument, match="serves location eu"):
        parse_url("https://documentai.eu.rep.googleapis.com/v1/projects/1/locations/us/operations/1")


def test_a_published_location_prefixed_host_is_the_default_for_its_location():
    ref = build_ref("projects/p/locations/europe-west4/operations/1", "aiplatform")
    assert ref.endpoint == "europe-west4-aiplatform.googleapis.com"


def test_an_api_without_a_published_regional_host_defaults_to_its_global_host():
    ref = build_ref("projects/p/locations/us-central1/operations/1", "translation")
    assert ref.endpoint == "translation.googleapis.com"


def test_a_published_location_host_is_the_default_for_cloud_run_too():
    ref = build_ref("projects/p/locations/us-central1/operations/1", "run")
    assert ref.endpoint == "us-central1-run.googleapis.com"


def test_a_location_that_would_make_a_dns_label_over_63_characters_is_refused():
    location = "l" + "o" * 60 + "ng"  # a valid 63-character location; "LOCATION-documentai" is not a label
    with pytest.raises(InvalidArgument, match="DNS name"):
        build_ref(f"projects/p/locations/{location}/operations/1", "documentai")


def test_a_refusal_names_the_closest_published_pattern():
    with pytest.raises(InvalidArgument, match=r"vision v1 names look like locations/\{L\}/operations/\{ID\}"):
        build_ref("locations/us-west1/things/1", "vision")


def test_api_version_picks_among_versions_that_publish_the_same_pattern():
    name = "projects/p/regions/us-central1/operations/1"
    assert build_ref(name, "dataproc").api_version == "v1"
    assert build_ref(name, "dataproc", "v1beta2").api_version == "v1beta2"


def test_a_literal_pattern_beats_a_catch_all():
    assert build_ref("projects/p/locations/global/operations/1", "speech").api_version == "v2beta1"
    assert build_ref("42", "speech").api_version == "v1"


def test_service_resolves_by_api_name_host_and_host_label():
    assert resolve_service("translate") is resolve_service("translation") is resolve_service(
        "translation.googleapis.com")


def test_capabilities_come_from_the_catalog():
    assert not build_ref("42", "speech").can("cancel")
    assert build_ref("projects/1/locations/us/operations/1", "documentai").can("cancel")
    assert build_ref("projects/1/locations/us/operations/1", "documentai").can("list")


def test_every_catalog_form_accepts_its_example_name_and_rebuilds_its_url():
    refused = []
    for form in iter_forms():
        name = example_name(form)
        try:
            ref = build_ref(name, form.api, form.version)
            assert parse_url(f"https://{form.host}/{form.prefix}/{name}").id == ref.id
        except InvalidArgument as exc:
            refused.append(f"{form.api} {form.version} {form.readable}: {exc.message}")
    assert not refused, "\n".join(refused)
    assert load().form_count == sum(1 for _ in iter_forms())
