"""`lrowatch services`: Google's published long-running operations, from the packaged catalog.

Offline: the catalog ships with lrowatch, so this needs no deployment
(`GET /services` on submit answers the same from a deployed one).
"""
from __future__ import annotations

import argparse

from functions.cli import render
from functions.cli.errors import OK, UsageError
from functions.domain.catalog import load
from functions.domain.errors import InvalidArgument
from functions.domain.names import resolve_service


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("services", parents=[common], help="APIs whose operations lrowatch can track",
                       description="Without NAME: one line per API. With NAME (short name or host): its "
                                   "operation name patterns, endpoints and whether cancel and list exist.")
    p.add_argument("name", nargs="?", help="an API, e.g. vision or documentai.googleapis.com")
    p.set_defaults(run=run, offline=True)


def run(args: argparse.Namespace, _client) -> int:
    if args.name:
        try:
            api = resolve_service(args.name).to_json()
        except InvalidArgument as exc:
            raise UsageError(exc.message, "`lrowatch services` lists them all") from exc
        if args.json:
            render.as_json(api)
        else:
            _detail(api)
        return OK
    catalog = load()
    if args.json:
        render.as_json(catalog.to_json())
        return OK
    print(f"{len(catalog.apis)} APIs, {catalog.form_count} operation name forms ({catalog.source})")
    for api in catalog.apis.values():
        cancel = "cancel" if api.can("cancel") else "-"
        listing = "list" if api.can("list") else "-"
        print(f"  {api.name:<28} {api.host:<44} {len(api.forms):>3} forms  {cancel:<6} {listing:<4} "
              f"{' '.join(api.versions)}")
    return OK


def _detail(api: dict) -> None:
    print(f"{api['name']}  {api['host']}  versions: {' '.join(api['versions'])}")
    for form in api["forms"]:
        caps = ", ".join(c for c in ("cancel", "list", "delete") if form[c]) or "get only"
        print(f"  {form['version']:<10} {form['pattern']}  ({caps})")
    if api["location_prefixed_hosts"]:
        print(f"  regional hosts: LOCATION-{api['host']} for any location")
    for location, hosts in api["regional_endpoints"].items():
        print(f"  {location:<24} {' '.join(hosts)}")
