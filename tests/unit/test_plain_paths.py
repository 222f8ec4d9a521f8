"""The paths HostPools sends as they are: exactly those urllib3's URL parsing leaves alone."""
from __future__ import annotations

from hypothesis import given, strategies as st
from urllib3.util import parse_url

from functions.adapters.operations_api import plain_path
from functions.domain.names import build_ref

ORIGIN = "https://us-documentai.googleapis.com"


@given(st.lists(st.text(alphabet="aZ09._~-!$&'()*+,;=:@%/?# é\"<>{}|\\^`[]", max_size=12), min_size=1, max_size=6))
def test_a_path_taken_as_it_is_is_one_urllib3_would_not_change(segments):
    path = "/" + "/".join(segments)
    if plain_path(path):
        assert parse_url(ORIGIN + path).request_uri == path


def test_operation_urls_as_built_are_plain_paths():
    for name, service in [("projects/123/locations/us/operations/bc4e1d412863e626", "documentai"),
                          ("locations/us-west1/operations/abc_DEF-1.2", "vision"),
                          ("operations/projects/p/instances/i/operations/x", "bigtableadmin")]:
        ref = build_ref(name, service)
        for suffix in ("", ":cancel"):
            assert plain_path(f"/{ref.endpoint}/{ref.path}{suffix}")


def test_paths_urllib3_would_rewrite_are_not_plain():
    for path in ["/a/../b", "/a/./b", "/a/..", "/a%2fb", "/a b", "/a?x=1", "/a#f", "", "/é", "a/b", "/a/.x"]:
        assert not plain_path(path)


def test_every_character_taken_as_plain_is_one_urllib3_leaves_alone():
    for code in range(1, 0x250):
        for path in (f"/{chr(code)}", f"/a/{chr(code)}b/c"):
            if plain_path(path):
                assert parse_url(ORIGIN + path).request_uri == path, repr(path)
