"""One function per subcommand: (parsed args, client) → exit code. Output via render."""
from __future__ import annotations

import argparse
import getpass
import importlib
import json
import os
import shlex
import sys

from functions.cli import refs, render
from functions.cli.api import Client
from functions.cli.errors import OK, ApiError, UsageError, WaitTimeout
from functions.cli.retry import Backoff
from functions.cli.wait import Waiter, exit_code
from functions.cli.watch import watch

MAX_PAGES = 1000  # --all stops here: a guard against a server that never ends a listing
ITEMS_PAGE_SIZE = 1000


def submit(args: argparse.Namespace, client: Client) -> int:
    body = _submission(args)
    record, created = client.submit(body)
    if args.json:
        render.as_json({"created": created, "operation": record})
    else:
        print(f"{'Tracking' if created else 'Already tracked'}: {record['id']}")
        render.record(record)
        print(f"\nnext: lrowatch watch {record['id']}{_target_flag(args)}")
    return OK


def _submission(args: argparse.Namespace) -> dict:
    if args.from_json:
        if args.operation:
            raise UsageError("give either an operation or --from-json, not both")
        body = refs.from_operation_json(refs.read_json_arg(args.from_json))
        if args.service:
            body["service"] = args.service
        if "service" not in body:
            raise UsageError("cannot tell the service from the operation's metadata",
                             "add --service, e.g. --service documentai")
    elif not args.operation:
        raise UsageError("what should be tracked?",
                         "give an operation name with --service, its URL, or --from-json FILE")
    elif args.operation.startswith("https://"):
        if args.service:
            raise UsageError("an operation URL already names its service; drop --service")
        body = {"url": args.operation}
    else:
        if not args.service:
            raise UsageError("a name needs --service", "e.g. --service documentai (or give the operation's URL)")
        body = {"name": args.operation, "service": args.service}
    optional = {
        "api_version": args.api_version,
        "quota_project": args.quota_project,
        "labels": refs.labels(args.label) or None,
        "correlation_id": args.correlation_id,
        "notify_topic": args.notify_topic,
        "notify_url": args.notify_url,
        "policy": refs.policy(args.policy),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def status(args: argparse.Namespace, client: Client) -> int:
    record = client.get(refs.operation_id(args.operation, args.service))
    render.as_json(record) if args.json else render.record(record)
    return OK


def list_(args: argparse.Namespace, client: Client) -> int:
    params = {"state": args.state, "service": args.service, "limit": args.limit, "page_token": args.page_token}
    params.update({f"label.{k}": v for k, v in refs.labels(args.label).items()})
    params = {k: str(v) for k, v in params.items() if v is not None}
    operations, token = [], None
    for _ in range(MAX_PAGES):
        page = client.list(params)
        operations += page.get("operations") or []
        token = page.get("next_page_token")
        if not (args.all and token):
            break
        params["page_token"] = token
    if args.json:
        render.as_json({"operations": operations, **({"next_page_token": token} if token else {})})
        return OK
    if not operations:
        print("no tracked operations match", file=sys.stderr)
        return OK
    render.table([render.operation_row(op) for op in operations], render.LIST_COLUMNS)
    if token:
        print(f"\nmore: lrowatch list{_list_filters(args)}{_target_flag(args)} --page-token {token} (or --all)",
              file=sys.stderr)
    return OK


def items(args: argparse.Namespace, client: Client) -> int:
    """The failed items, every page: one a line (its input, ready to resubmit), --csv or --json."""
    operation_id = refs.operation_id(args.operation, args.service)
    params = {"state": "failed", "page_size": str(ITEMS_PAGE_SIZE)}
    failed, total = [], 0
    for _ in range(MAX_PAGES):
        page = client.items(operation_id, params)
        failed += page.get("items") or []
        total = page.get("total_size", len(failed))
        if not page.get("next_page_token"):
            break
        params["page_token"] = page["next_page_token"]
    if args.json:
        render.as_json({"items": failed, "total_size": total})
    elif args.csv:
        render.items_csv(failed)
    else:
        render.items_plain(failed)
        for note in render.items_notes(failed):
            print(note, file=sys.stderr)
    if total > len(failed):
        print(f"{total} items failed; lrowatch keeps the first {len(failed)}", file=sys.stderr)
    elif not failed:
        print("no failed items", file=sys.stderr)
    return OK


def cancel(args: argparse.Namespace, client: Client) -> int:
    operation_id = refs.operation_id(args.operation, args.service)
    body = {"requested_by": f"lrowatch-cli:{_user()}"}
    if args.reason:
        body["reason"] = args.reason
    answer = client.cancel(operation_id, body)
    if args.json:
        render.as_json(answer)
    else:
        print(f"Cancellation requested for {answer.get('id')} (was {answer.get('state')}).")
        print("handle calls the API's :cancel once; the outcome and the new state follow as events:")
        print(f"  lrowatch watch {answer.get('id')}{_target_flag(args)}")
    return OK


def watch_(args: argparse.Namespace, client: Client) -> int:
    """Events as they come; with an ID, it ends as the operation does (wait's exit codes)."""
    operation_id = refs.operation_id(args.operation, args.service) if args.operation else None
    if args.json:
        emit = lambda event: print(json.dumps(event, sort_keys=True), flush=True)  # noqa: E731 — JSON lines
    else:
        emit = lambda event: print(render.event_line(event), flush=True)  # noqa: E731
    final = watch(client, operation_id, emit, timeout_s=args.timeout, interval_s=args.interval,
                  backoff=_backoff(args))
    if operation_id is None:
        return OK
    if final is None or not final.get("done"):
        print("stopped before the operation finished", file=sys.stderr)
    return exit_code([final or {}])


def wait_(args: argparse.Namespace, client: Client) -> int:
    ids = [refs.operation_id(ref, args.service) for ref in args.operations]
    line = render.LiveLine()
    waiter = Waiter(client, _backoff(args, line), interval_s=args.interval)
    try:
        records = waiter.wait(ids, args.timeout, lambda rs, elapsed: line.show(render.wait_line(rs, elapsed)))
    finally:
        line.close()
    if args.json:
        render.as_json({"operations": records})
    else:
        render.table([render.operation_row(op) for op in records], render.LIST_COLUMNS)
    # On stderr in both modes: stdout keeps its documented shape, and a CI log still shows it.
    for note in filter(None, (render.failed_items_note(op, _target_flag(args)) for op in records)):
        print(note, file=sys.stderr)
    code = exit_code(records)
    if code == WaitTimeout.exit_code:
        print(f"error: --timeout {args.timeout:g} s passed before every operation finished", file=sys.stderr)
        print("  → wait again, or raise --timeout", file=sys.stderr)
    return code


def _backoff(args: argparse.Namespace, line: render.LiveLine | None = None) -> Backoff:
    def on_retry(exc, delay):
        if line:
            line.close()
        print(f"{exc.message}; retrying in {delay:g} s", file=sys.stderr, flush=True)

    return Backoff(give_up_after_s=args.max_unavailable, on_retry=on_retry)


def dlq_replay(args: argparse.Namespace, client: Client | None) -> int:
    """Publish dead letters back to their topic; the work is functions.dlq's."""
    try:
        dlq = importlib.import_module("functions.dlq")
    except ModuleNotFoundError as exc:
        if exc.name != "functions.dlq":
            raise
        raise UsageError("dlq replay is not available in this version of lrowatch (no functions.dlq)",
                         "update lrowatch; meanwhile see docs/operations.md, 'Dead letters'") from exc
    demo = client.target.demo if client else {}
    env = {**(demo.get("env") or {}), **(demo.get("emulators") or {})}
    project = args.project or demo.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise UsageError("which project holds the dead letters?", "add --project P (or use --local)")
    if env.get("PUBSUB_EMULATOR_HOST"):  # the Pub/Sub clients' standard switch, for this process only
        os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    try:
        report = dlq.replay(args.subscription, args.topic, project=project, limit=args.limit,
                            dry_run=args.dry_run)
    except dlq.ReplayError as exc:
        raise ApiError(str(exc), "the rest stay in the dead-letter subscription; run the replay again") from exc
    result = report.to_json()
    if args.json:
        render.as_json(result)
    else:
        verb = "would replay" if args.dry_run else "replayed"
        print(f"{verb} {result['republished'] if not args.dry_run else result['pulled']} message(s) "
              f"from {result['subscription']} to {result['topic']}")
    return OK


def _list_filters(args: argparse.Namespace) -> str:
    """The filters of this listing, as options: a page token continues the same query."""
    options = [("--state", args.state), ("--service", args.service), ("--limit", args.limit)]
    options += [("--label", label) for label in args.label or []]
    return "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in options if value is not None)


def _target_flag(args: argparse.Namespace) -> str:
    return " --local" if args.local else (f" --url {shlex.quote(args.url)}" if args.url else "")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
