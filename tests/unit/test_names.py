"""Operation names, the service registry and endpoint resolution (contract §3)."""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.errors import InvalidArgument
from functions.domain.names import (
    MAX_NAME_BYTES,
    REGISTRY,
    build_ref,
    location_of,
    operation_id,
    parse_url,
    resolve_service,
    validate_name,
    validate_version,
)

DOCAI_US = "projects/123/locations/us/operations/bc4e1d412863e626"
DOCAI_EU = "projects/123/locations/eu/operations/bc4e1d412863e626"
DOCAI_GLOBAL = "projects/123/locations/global/operations/bc4e1d412863e626"
VERTEX = "projects/my-project/locations/us-central1/operations/1234567890"
VISION = "projects/my-project/locations/us-east1/operations/f1b2c3d4"


# ---- services ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["vision", "vision.googleapis.com"])
def test_vision_short_name_and_host_resolve_to_the_same_service(value):
    assert resolve_service(value).host == "vision.googleapis.com"


@pytest.mark.parametrize("short", sorted(REGISTRY))
def test_every_registered_service_resolves_by_short_name_and_by_host(short):
    service = REGISTRY[short]
    assert resolve_service(short) is service
    assert resolve_service(service.host) is service


def test_translation_defaults_to_its_own_api_version():
    assert build_ref("projects/p1/locations/global/operations/1", "translation").api_version == "v3"


def test_explicit_api_version_is_kept():
    assert build_ref(DOCAI_US, "documentai", "v1beta3").api_version == "v1beta3"


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1beta3"])
def test_versions_the_api_publishes_are_accepted(version):
    assert validate_version(version, REGISTRY["documentai"]) == version


@pytest.mark.parametrize("version", ["v2", "v1beta1", "v3p1beta1"])
def test_well_formed_versions_the_api_does_not_publish_are_refused_with_its_versions(version):
    with pytest.raises(InvalidArgument, match="its versions are v1, v1beta2, v1beta3"):
        validate_version(version, REGISTRY["documentai"])


@pytest.mark.parametrize("version", ["", "1", "V1", "v1/../x", "v1?x", "v1\n", "v1 ", 1, ["v1"], "latest"])
def test_malformed_api_versions_are_refused(version):
    with pytest.raises(InvalidArgument):
        validate_version(version, REGISTRY["vision"])


# ---- endpoints ------------------------------------------------------------------

def test_document_ai_us_location_uses_the_us_regional_endpoint():
    ref = build_ref(DOCAI_US, "documentai.googleapis.com")
    assert ref.endpoint == "us-documentai.googleapis.com"
    assert ref.service == "documentai.googleapis.com"
    assert ref.url == f"https://us-documentai.googleapis.com/v1/{DOCAI_US}"


def test_document_ai_eu_location_uses_the_eu_regional_endpoint():
    assert build_ref(DOCAI_EU, "documentai").endpoint == "eu-documentai.googleapis.com"


def test_document_ai_global_location_uses_the_base_host():
    assert build_ref(DOCAI_GLOBAL, "documentai").endpoint == "documentai.googleapis.com"


def test_document_ai_name_without_location_uses_the_base_host():
    assert build_ref("projects/123/operations/42", "documentai").endpoint == "documentai.googleapis.com"


def test_vertex_regional_name_uses_the_region_prefixed_host():
    ref = build_ref(VERTEX, "aiplatform")
    assert ref.endpoint == "us-central1-aiplatform.googleapis.com"
    assert ref.location == "us-central1"


def test_vision_stays_on_its_global_host_with_location_in_the_path():
    ref = build_ref(VISION, "vision")
    assert ref.endpoint == "vision.googleapis.com"
    assert ref.url == f"https://vision.googleapis.com/v1/{VISION}"


def test_bare_operations_name_is_accepted():
    ref = build_ref("operations/abc123", "vision")
    assert ref.url == "https://vision.googleapis.com/v1/operations/abc123"
    assert ref.location is None


def test_location_of_reads_the_segment_after_locations():
    assert location_of(VERTEX) == "us-central1"
    assert location_of("operations/1") is None


# ---- ids -----------------------------------------------------------------------

def test_id_is_a_32_hex_digest():
    ref = build_ref(DOCAI_US, "documentai")
    assert re.fullmatch(r"[0-9a-f]{32}", ref.id)


def test_id_is_stable_across_service_spellings_and_calls():
    a = build_ref(DOCAI_US, "documentai")
    b = build_ref(DOCAI_US, "documentai.googleapis.com")
    assert a.id == b.id == operation_id("documentai.googleapis.com", DOCAI_US)


def test_id_is_the_same_for_a_url_and_for_name_plus_service():
    url = f"https://us-documentai.googleapis.com/v1/{DOCAI_US}"
    assert parse_url(url).id == build_ref(DOCAI_US, "documentai").id


def test_id_differs_for_different_names_or_services():
    assert operation_id("vision.googleapis.com", "operations/1") != operation_id("vision.googleapis.com", "operations/2")
    assert operation_id("vision.googleapis.com", "operations/1") != operation_id("speech.googleapis.com", "operations/1")


def test_id_separates_service_from_name_so_shifted_parts_do_not_collide():
    assert operation_id("vision.googleapis.com", "operations/1") != operation_id("vision.googleapis.co", "moperations/1")


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True))
def test_any_valid_operation_id_segment_yields_a_stable_32_hex_id(op):
    ref = build_ref(f"projects/p/operations/{op}", "vision")
    assert re.fullmatch(r"[0-9a-f]{32}", ref.id)
    assert build_ref(f"projects/p/operations/{op}", "vision.googleapis.com").id == ref.id


# ---- url form ---------------------------------------------------------------

@pytest.mark.parametrize("url, endpoint, name", [
    (f"https://us-documentai.googleapis.com/v1/{DOCAI_US}", "us-documentai.googleapis.com", DOCAI_US),
    (f"https://eu-documentai.googleapis.com/v1/{DOCAI_EU}", "eu-documentai.googleapis.com", DOCAI_EU),
    (f"https://documentai.googleapis.com/v1/{DOCAI_GLOBAL}", "documentai.googleapis.com", DOCAI_GLOBAL),
    (f"https://us-central1-aiplatform.googleapis.com/v1/{VERTEX}", "us-central1-aiplatform.googleapis.com", VERTEX),
    (f"https://vision.googleapis.com/v1/{VISION}", "vision.googleapis.com", VISION),
    ("https://vision.googleapis.com/v1/operations/abc", "vision.googleapis.com", "operations/abc"),
])
def test_doc_style_urls_parse_to_the_same_ref_lrowatch_would_build(url, endpoint, name):
    ref = parse_url(url)
    assert ref.endpoint == endpoint
    assert ref.name == name
    assert ref.url == url


def test_url_keeps_its_api_version():
    ref = parse_url(f"https://us-documentai.googleapis.com/v1beta3/{DOCAI_US}")
    assert ref.api_version == "v1beta3"
    assert ref.service == "documentai.googleapis.com"


# ---- hostile input ------------------------------------------------------------

HOSTILE_URLS = [
    "https://x.googleapis.com@evil.com/v1/operations/1",
    "https://vision.googleapis.com@evil.com/v1/operations/1",
    "https://user:pw@vision.googleapis.com/v1/operations/1",
    f"https://documentai.googleapis.com.evil.com/v1/{DOCAI_US}",
    "https://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
    "https://169.254.169.254/v1/operations/1",
    "http://metadata.google.internal/computeMetadata/v1/operations/1",
    "https://metadata.google.internal/v1/operations/1",
    "http://vision.googleapis.com/v1/operations/1",
    "HTTPS://vision.googleapis.com/v1/operations/1",
    "ftp://vision.googleapis.com/v1/operations/1",
    "//vision.googleapis.com/v1/operations/1",
    "https://vision.googleapis.com:443/v1/operations/1",
    "https://vision.googleapis.com:8080/v1/operations/1",
    "https://vision.googleapis.com/v1/operations/../../token",
    "https://vision.googleapis.com/v1/projects/p/../operations/1",
    "https://vision.googleapis.com/v1/projects/p/./operations/1",
    "https://vision.googleapis.com/v1/projects%2Fp/operations/1",
    "https://vision.googleapis.com/v1/projects/p%2F..%2F/operations/1",
    "https://vision.googleapis.com/v1/projects/p/operations/1%2F",
    "https://vision.googleapis.com/v1/operations/1?alt=media",
    "https://vision.googleapis.com/v1/operations/1#frag",
    "https://vision.googleapis.com/v1/operations/1\n",
    "https://vision.googleapis.com/v1/operations/1\r\nHost: evil.com",
    "https://vision.googleapis.com/v1/operations/1\r",
    "https://vision.googleapis.com/v1/operations/1 ",
    " https://vision.googleapis.com/v1/operations/1",
    "https://vision.googleapis.com/v1/operations/1\\evil",
    "https://vision.googleapis.com/v1//operations/1",
    "https://vision.googleapis.com//v1/operations/1",
    "https://vision.googleapis.com/v1/",
    "https://vision.googleapis.com/v1/operations/",
    "https://vision.googleapis.com/operations/1",
    "https://vision.googleapis.com/v1/projects/p/topics/t",
    "https://VISION.googleapis.com/v1/operations/1",
    "https://vision.googleapis.com./v1/operations/1",
    "https://vision.evil.googleapis.com/v1/operations/1",
    "https://evil-vision.googleapis.com/v1/operations/1",  # vision is not regional
    "https://us-vision.googleapis.com/v1/operations/1",
    "https://googleapis.com/v1/operations/1",
    "https://evil.com/v1/operations/1",
    "https://storage.googleapis.com/v1/operations/1",
    "https://vіsion.googleapis.com/v1/operations/1",  # Cyrillic i
    "https://xn--vsion-3ve.googleapis.com/v1/operations/1",
    # location in the name must match the host
    f"https://eu-documentai.googleapis.com/v1/{DOCAI_US}",
    f"https://us-documentai.googleapis.com/v1/{DOCAI_EU}",
    f"https://us-documentai.googleapis.com/v1/{DOCAI_GLOBAL}",
    f"https://europe-west4-aiplatform.googleapis.com/v1/{VERTEX}",
    "https://us-documentai.googleapis.com/v1/projects/123/operations/1",
    "https://evil.com-documentai.googleapis.com/v1/projects/1/locations/evil.com/operations/1",
    "https://a.b-documentai.googleapis.com/v1/projects/1/locations/a.b/operations/1",
    f"https://us-documentai.googleapis.com/V1/{DOCAI_US}",
    f"https://us-documentai.googleapis.com/latest/{DOCAI_US}",
    "https://vision.googleapis.com/v1/" + "operations/" + "a" * 1600,
    "",
    None,
    42,
    b"https://vision.googleapis.com/v1/operations/1",
    {"url": "https://vision.googleapis.com/v1/operations/1"},
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_or_malformed_urls_are_refused(url):
    with pytest.raises(InvalidArgument):
        parse_url(url)


HOSTILE_SERVICES = [
    "", "evil.com", "googleapis.com", ".googleapis.com", "vision.googleapis.com.evil",
    "vision.evil.googleapis.com", "evil.vision.googleapis.com", "VISION", "Vision",
    "VISION.GOOGLEAPIS.COM", "vision.googleapis.com.", " vision", "vision ", "vision\n",
    "vіsion",  # Cyrillic i
    "vision.googleapis.com\n", "vision.googleapis.com/", "https://vision.googleapis.com",
    "vision.googleapis.com:443", "us-documentai", "us-documentai.googleapis.com",
    "storage", "metadata.google.internal", "169.254.169.254", "vision.googleapis.co",
    None, 1, True, ["vision"], {"host": "vision"},
]


@pytest.mark.parametrize("service", HOSTILE_SERVICES)
def test_unknown_or_tricky_services_are_refused(service):
    with pytest.raises(InvalidArgument):
        resolve_service(service)
    with pytest.raises(InvalidArgument):
        build_ref("operations/1", service)


HOSTILE_NAMES = [
    "",
    "operations",
    "projects/p",
    "projects/p/operations",
    "projects/p/operations/",
    "/projects/p/operations/1",
    "projects//operations/1",
    "projects/p/operations/1/",
    "projects/p/topics/t",
    "buckets/b/operations/1",
    "projects/p/../operations/1",
    "projects/../../operations/1",
    "projects/p/operations/..",
    "projects/p/operations/a..b",
    "projects/./operations/1",
    "projects/p%2F/operations/1",
    "projects/p/operations/1%2F..",
    "projects/p/operations/1?x=1",
    "projects/p/operations/1#x",
    "projects/p/operations/1\n",
    "projects/p/operations/1\r\n",
    "projects/p\n/operations/1",
    "projects/p/operations/1\x00",
    "projects/p/operations/ 1",
    "projects/p/operations/1\\x",
    "projects/p@evil.com/operations/1",
    "projects/p:443/operations/1",
    "projects/p/operations/" + "a" * 200 + "/operations/" + "b" * 200 + "/" + "/".join(["c" * 200] * 6),
    "projects/p/operations/ópera",
    "projects/p/locations/US/operations/1",
    "projects/p/locations/us.evil.com/operations/1",
    "projects/p/locations/evil.com/operations/1",
    "projects/p/locations/us_east/operations/1",
    "projects/p/locations/-us/operations/1",
    "projects/p/locations/us-/operations/1",
    "projects/p/locations/u/operations/1",
    "projects/p/locations/us\n/operations/1",
    "projects/p/locations/1us/operations/1",
    None,
    42,
    ["projects", "p"],
    {"name": "operations/1"},
    b"operations/1",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_or_malformed_names_are_refused(name):
    with pytest.raises(InvalidArgument):
        build_ref(name, "documentai")


def test_name_of_exactly_1500_bytes_is_accepted():
    prefix = "projects/p/operations/"
    tail = "/".join(["a" * 200] * 7)
    name = prefix + tail
    name = name + "/operations/" + "z" * (MAX_NAME_BYTES - len(name) - len("/operations/"))
    assert len(name.encode()) == MAX_NAME_BYTES
    assert validate_name(name) == name


def test_name_over_1500_bytes_is_refused():
    name = "projects/p/operations/" + "/".join(["a" * 200] * 8) + "/operations/x"
    assert len(name.encode()) > MAX_NAME_BYTES
    with pytest.raises(InvalidArgument, match="1500"):
        validate_name(name)


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_text_never_builds_a_ref_to_a_non_google_host(text):
    for value in (text, f"projects/p/locations/{text}/operations/1"):
        try:
            ref = build_ref(value, "documentai")
        except InvalidArgument:
            continue
        assert re.fullmatch(r"([a-z][a-z0-9-]*[a-z0-9]-)?documentai\.googleapis\.com", ref.endpoint)
        assert "\n" not in ref.url and "\r" not in ref.url


@given(st.text(max_size=60))
def test_arbitrary_text_as_a_url_never_escapes_googleapis(text):
    for url in (text, "https://" + text, f"https://vision.googleapis.com/v1/{text}"):
        try:
            ref = parse_url(url)
        except InvalidArgument:
            continue
        assert ref.endpoint.endswith(".googleapis.com")
        assert ref.url == url


def test_invalid_argument_carries_a_google_style_error_body():
    with pytest.raises(InvalidArgument) as caught:
        resolve_service("evil.com")
    assert caught.value.to_body()["error"]["status"] == "INVALID_ARGUMENT"
    assert caught.value.to_body()["error"]["code"] == 400
