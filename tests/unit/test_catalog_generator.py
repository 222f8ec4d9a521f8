"""tools/catalog.py on small discovery documents: what makes a form, what is left out."""
from __future__ import annotations

import json

from tools import catalog as generator

OPERATION = {"id": "Operation", "properties": {k: {} for k in ("name", "done", "error", "metadata", "response")}}


def document(name="vision", version="v1", operations=None, endpoints=(), service_path="", root=None):
    return {
        "kind": "discovery#restDescription", "name": name, "version": version, "servicePath": service_path,
        "rootUrl": root or f"https://{name}.googleapis.com/",
        "endpoints": [{"endpointUrl": e, "location": e.split("//")[1].split(".")[1] if ".rep." in e
                       else e.split("//")[1].split("-" + name)[0]} for e in endpoints],
        "schemas": {"Operation": OPERATION, "Other": {"id": "Other", "properties": {"name": {}}}},
        "resources": operations or {},
    }


def get(path, flat, pattern=None, response="Operation", params=None):
    parameters = params or {"name": {"location": "path", **({"pattern": pattern} if pattern else {})}}
    return {"httpMethod": "GET", "path": path, "flatPath": flat, "parameters": parameters,
            "response": {"$ref": response}}


def test_a_name_form_records_its_prefix_template_pattern_and_methods():
    ops = {"operations": {"methods": {
        "get": get("v1/{+name}", "v1/locations/{locationsId}/operations/{operationsId}",
                   "^locations/[^/]+/operations/[^/]+$"),
        "cancel": {}, "list": {}}}}
    forms, excluded = generator.operation_forms(document(operations={"locations": {"resources": ops}}))
    assert excluded == []
    assert forms == [{"version": "v1", "prefix": "v1", "template": "locations/{locationsId}/operations/{operationsId}",
                      "pattern": "^locations/[^/]+/operations/[^/]+$", "methods": ["cancel", "list"]}]


def test_a_get_that_returns_something_else_is_not_an_operation_form():
    ops = {"operations": {"methods": {"get": get("v1/{+name}", "v1/operations/{o}", "^operations/.*$",
                                                 response="Other")}}}
    assert generator.operation_forms(document(operations=ops)) == ([], [])


def test_a_prefix_other_than_the_version_is_kept():
    ops = {"operations": {"methods": {"get": get("dns/v1/{+name}", "dns/v1/projects/{p}/operations/{o}",
                                                 "^projects/[^/]+/operations/[^/]+$")}}}
    forms, _ = generator.operation_forms(document(name="dns", operations={"projects": {"resources": ops}}))
    assert forms[0]["prefix"] == "dns/v1" and forms[0]["template"] == "projects/{p}/operations/{o}"


def test_a_path_addressed_form_gets_a_pattern_from_its_segments():
    params = {"appsId": {"location": "path"}, "operationsId": {"location": "path"}}
    ops = {"operations": {"methods": {"get": get("v1/apps/{appsId}/operations/{operationsId}",
                                                 "v1/apps/{appsId}/operations/{operationsId}", params=params)}}}
    forms, _ = generator.operation_forms(document(name="appengine", operations={"apps": {"resources": ops}}))
    assert forms[0]["pattern"] == "^apps/[^/]+/operations/[^/]+$"


def test_a_form_addressed_by_other_parameters_is_excluded_with_its_reason():
    params = {"bucket": {"location": "path"}, "operationId": {"location": "path"}}
    ops = {"operations": {"methods": {"get": get("b/{bucket}/operations/{operationId}", None, params=params)}}}
    forms, excluded = generator.operation_forms(document(name="storage", operations=ops, service_path="storage/v1/"))
    assert forms == [] and "not by the operation's name" in excluded[0]["reason"]


def test_both_regional_endpoint_styles_are_collected_by_location():
    doc = document(name="documentai", endpoints=["https://documentai.eu.rep.googleapis.com/",
                                                 "https://us-documentai.googleapis.com/"])
    assert generator.endpoints(doc) == {"eu": ["documentai.eu.rep.googleapis.com"],
                                        "us": ["us-documentai.googleapis.com"]}


def test_the_rendered_catalog_is_deterministic_json_with_the_preferred_version():
    ops = {"operations": {"methods": {"get": get("v1/{+name}", "v1/operations/{o}", "^operations/.*$")}}}
    index = {"kind": "discovery#directoryList", "items": [{"name": "speech", "version": "v1", "preferred": True}]}
    docs = [index, document(name="speech", operations=ops), document(name="speech", version="v2", operations={
        "operations": {"methods": {"get": get("v2/{+name}", "v2/operations/{o}", "^operations/.*$")}}})]
    text = generator.render(generator.build(iter(docs), "pkg==1"))
    assert text == generator.render(generator.build(iter(docs), "pkg==1"))
    catalog = json.loads(text)
    assert catalog["apis"]["speech"]["preferred"] == "v1"
    assert catalog["apis"]["speech"]["versions"] == ["v1", "v2"]
    assert catalog["documents"] == 2
