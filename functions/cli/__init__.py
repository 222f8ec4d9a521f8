"""`lrowatch`: track Google Cloud long-running operations from a terminal.

    lrowatch submit --local projects/1/locations/us/operations/42 --service documentai
    lrowatch --local list --state RUNNING
    lrowatch --local watch ID
    lrowatch --local wait ID && echo done
    lrowatch items --local ID --failed > retry.txt
    lrowatch services vision

Exit codes: 0 ok · 1 the API refused the request (4xx) · 2 usage error ·
3 unreachable, not authorised or unavailable · 4 not found ·
wait/watch ID: 5 failed · 6 cancelled · 7 expired or timed out · 8 --timeout passed.
"""
from __future__ import annotations

import argparse
import sys

import functions
from functions.cli import commands, render, services
from functions.cli.api import Client
from functions.cli.errors import INTERRUPTED, CliError
from functions.cli.target import resolve

STATES = ("PENDING", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT")


WAIT_HELP = """Block until every operation is finished. Exit code (with several
operations, the first that applies in this order: 8, 5, 7, 6, 0):
  0  every operation SUCCEEDED
  5  one FAILED
  6  one was CANCELLED
  7  one EXPIRED or TIMED_OUT (lrowatch stopped tracking it)
  8  --timeout passed first
  4  an operation is not tracked        3  lrowatch unreachable for --max-unavailable seconds
No answer, 429 and 5xx are retried with backoff (1 s doubling to 30 s); the ID
token is renewed before it expires. On a terminal a live line shows progress."""


def _common_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """--url/--local/--json, accepted both before and after the subcommand. After it,
    an option left out must not reset what was given before it: hence SUPPRESS."""
    unset = {"default": argparse.SUPPRESS} if after_command else {}
    where = parser.add_argument_group("where lrowatch runs")
    where.add_argument("--url", help="the deployed submit function's URL (or set LROWATCH_URL)", **unset)
    where.add_argument("--local", action="store_true", help="the local demo started by `make demo`", **unset)
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output", **unset)


def _resilience_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds (default: when done)")
    p.add_argument("--interval", type=float, default=5.0, metavar="S", help="seconds between GETs of the record")
    p.add_argument("--max-unavailable", type=float, default=300.0, metavar="S",
                   help="give up (exit 3) after S seconds without an answer (default 300)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, after_command=True)

    parser = argparse.ArgumentParser(prog="lrowatch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lrowatch {functions.__version__}")
    _common_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", parents=[common], help="start tracking an operation")
    p.add_argument("operation", nargs="?", help="operation name (with --service) or its https:// URL")
    p.add_argument("--service", help="API short name or host, e.g. documentai")
    p.add_argument("--from-json", metavar="FILE", help="the operation JSON the API returned ('-' = stdin)")
    p.add_argument("--api-version", help="API version, e.g. v1beta3 (default: the service's)")
    p.add_argument("--quota-project", help="project billed for the GETs (x-goog-user-project)")
    p.add_argument("--label", action="append", metavar="K=V", help="a label (repeatable)")
    p.add_argument("--correlation-id", help="your own id, echoed in every event")
    p.add_argument("--notify-topic", metavar="projects/P/topics/T", help="topic told when it finishes")
    p.add_argument("--notify-url", help="https webhook told when it finishes (must be allowlisted)")
    p.add_argument("--policy", metavar="JSON", help='polling policy, e.g. \'{"initial_delay_s": 0}\'')
    p.set_defaults(run=commands.submit)

    p = sub.add_parser("status", parents=[common], help="show one tracked operation")
    _operation_args(p)
    p.set_defaults(run=commands.status)

    p = sub.add_parser("list", parents=[common], help="list tracked operations")
    p.add_argument("--state", choices=STATES, type=str.upper)
    p.add_argument("--service", help="API short name or host")
    p.add_argument("--label", action="append", metavar="K=V", help="only with this label (repeatable)")
    p.add_argument("--limit", type=int, help="page size (1-500, default 50)")
    p.add_argument("--page-token", help="continue a listing")
    p.add_argument("--all", action="store_true", help="follow every page")
    p.set_defaults(run=commands.list_)

    p = sub.add_parser("items", parents=[common], help="list an operation's failed items",
                       description="Prints the failed items' inputs one per line (e.g. gs:// URIs), ready to "
                                   "resubmit (an item without an input, as a Vision import's, as 'csv line N: "
                                   "status'); --csv adds index, status code and message; --json the whole items.")
    _operation_args(p)
    p.add_argument("--failed", action="store_true",
                   help="the failed items (the default: lrowatch keeps only the failed ones)")
    p.add_argument("--csv", action="store_true", help="CSV: index,input,code,message,human_review_state")
    p.set_defaults(run=commands.items)

    p = sub.add_parser("cancel", parents=[common], help="request the operation's cancellation")
    _operation_args(p)
    p.add_argument("--reason", help="recorded with the cancel outcome")
    p.set_defaults(run=commands.cancel)

    p = sub.add_parser("watch", parents=[common], help="follow state changes as they happen",
                       description="Locally: the real events, from the demo's Pub/Sub emulator. "
                                   "Deployed: polls GET /operations/ID every --interval seconds. "
                                   "With an ID it ends as the operation does, with `wait`'s exit codes.")
    _operation_args(p, required=False)
    _resilience_options(p)
    p.set_defaults(run=commands.watch_)

    p = sub.add_parser("wait", parents=[common], help="block until operations finish; the exit code says how",
                       description=WAIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("operations", nargs="+", metavar="ID", help="record id or operation URL (several allowed), "
                                                                "or names with --service")
    p.add_argument("--service", help="with names: the API short name or host")
    _resilience_options(p)
    p.set_defaults(run=commands.wait_)

    services.add_parser(sub, common)

    dlq = sub.add_parser("dlq", help="dead-lettered messages").add_subparsers(dest="dlq_command", required=True,
                                                                               metavar="ACTION")
    p = dlq.add_parser("replay", parents=[common], help="publish dead letters back to their topic",
                       description="Local demo: --subscription lro-events-handle-dlq --topic lro-events. "
                                   "Deployed: --subscription lro-events-to-handle-dlq-hold (see docs/operations.md).")
    p.add_argument("--subscription", required=True, help="the pull subscription on the dead-letter topic")
    p.add_argument("--topic", required=True, help="the topic the messages came from")
    p.add_argument("--limit", type=_positive, help="at most this many messages (default: all)")
    p.add_argument("--dry-run", action="store_true", help="report what would be replayed; change nothing")
    p.add_argument("--project", help="the project (default: the demo's, or GOOGLE_CLOUD_PROJECT)")
    p.set_defaults(run=commands.dlq_replay, offline=True)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _operation_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("operation", nargs=None if required else "?", help="record id, operation URL, or name with --service")
    p.add_argument("--service", help="with a name: the API short name or host")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "offline", False) and not (args.local or args.url):
            client = None  # dlq replay talks to Pub/Sub, not to the submit URL
        else:
            client = Client(resolve(args.url, args.local))
        return args.run(args, client)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except CliError as exc:
        if args.json and exc.body:
            render.as_json(exc.body, sys.stderr)
        # The message may quote the server's answer: its control characters are written out, not run.
        print(f"error: {render.visible(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"  → {render.visible(exc.hint)}", file=sys.stderr)
        return exc.exit_code

