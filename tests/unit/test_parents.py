"""LRO_ALLOWED_PARENTS: names, quota projects and notify topics must fall inside it."""
from __future__ import annotations

import pytest

from functions.domain.errors import PermissionDenied
from functions.domain.parents import check_allowed, parent_of, parse_allowed

ALLOWED = ("projects/my-project", "projects/123456", "folders/42")


def test_unset_or_empty_means_any_parent():
    assert parse_allowed(None) is None and parse_allowed(" ") is None
    check_allowed(None, name="projects/elsewhere/locations/us/operations/1", quota_project="x",
                  notify_topic="projects/elsewhere/topics/t")


def test_the_list_is_parsed_and_checked():
    assert parse_allowed(" projects/my-project, projects/123456,organizations/7,folders/42 ") == (
        "projects/my-project", "projects/123456", "organizations/7", "folders/42")


@pytest.mark.parametrize("raw", ["my-project", "projects/", "projects/My_Project", "organizations/acme",
                                 "projects/p/locations/us", "folders/42/x", "billingAccounts/1"])
def test_anything_but_projects_organizations_and_folders_is_refused(raw):
    with pytest.raises(ValueError):
        parse_allowed(raw)


@pytest.mark.parametrize("name, parent", [
    ("projects/p/locations/us/operations/1", "projects/p"),
    ("projects/p/databases/(default)/operations/x", "projects/p"),
    ("organizations/7/locations/global/operations/1", "organizations/7"),
    ("folders/42/operations/1", "folders/42"),
    ("locations/us-west1/operations/1", None),
    ("operations/abc", None),
    ("operations/projects/p/instances/i/clusters/c/locations/l/operations/1", "projects/p"),  # Bigtable admin
    ("7612202767953098924", None),  # Speech v1: a bare id
    ("billingAccounts/1/operations/2", "billingAccounts/1"),
])
def test_the_parent_of_a_name_is_read_from_the_name(name, parent):
    assert parent_of(name) == parent


@pytest.mark.parametrize("fields", [
    {"name": "projects/my-project/locations/us/operations/1"},
    {"name": "projects/123456/locations/us/operations/1", "quota_project": "my-project"},
    {"name": "folders/42/locations/global/operations/1", "notify_topic": "projects/123456/topics/done"},
    {"name": "locations/us-west1/operations/1"},  # no parent: the credentials' own project
    {"name": "operations/abc", "quota_project": "123456"},
])
def test_names_quota_projects_and_topics_inside_the_list_are_allowed(fields):
    check_allowed(ALLOWED, **fields)


@pytest.mark.parametrize("fields, field", [
    ({"name": "projects/victim/locations/us/operations/1"}, "name"),
    ({"name": "projects/my-project/locations/us/operations/1", "quota_project": "victim-billing"}, "quota_project"),
    ({"name": "operations/abc", "notify_topic": "projects/victim/topics/t"}, "notify_topic"),
    ({"name": "organizations/7/operations/1"}, "name"),
    ({"name": "billingAccounts/1/operations/2"}, "name"),
])
def test_anything_outside_is_permission_denied_naming_the_field(fields, field):
    with pytest.raises(PermissionDenied, match=rf"^{field} is in .*\(LRO_ALLOWED_PARENTS\)"):
        check_allowed(ALLOWED, **fields)
