"""`wait`'s pure parts: exit codes, the retry schedule, token renewal, the wait loop, the
live line, and common options on either side of the subcommand. No I/O."""
from __future__ import annotations

import base64
import io
import json

import pytest

import functions
from functions.cli import build_parser, render, target
from functions.cli.errors import ApiError, NotFoundError, Unreachable
from functions.cli.retry import Backoff
from functions.cli.wait import Waiter, exit_code


def rec(state: str, done: bool | None = None, **extra) -> dict:
    terminal = state in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT")
    return {"id": "a" * 32, "state": state, "done": terminal if done is None else done, **extra}


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- exit codes -----------------------------------------------------------------------

@pytest.mark.parametrize("states, code", [
    (["SUCCEEDED"], 0), (["FAILED"], 5), (["CANCELLED"], 6), (["EXPIRED"], 7), (["TIMED_OUT"], 7),
    (["RUNNING"], 8), (["PENDING"], 8),
    (["SUCCEEDED", "CANCELLED"], 6), (["CANCELLED", "EXPIRED"], 7), (["EXPIRED", "FAILED"], 5),
    (["FAILED", "RUNNING"], 8), (["SUCCEEDED", "SUCCEEDED"], 0),
])
def test_each_outcome_has_its_exit_code_and_the_worst_wins(states, code):
    assert exit_code([rec(s) for s in states]) == code


def test_a_done_record_in_a_state_the_cli_does_not_know_counts_as_failed():
    assert exit_code([rec("EXPLODED", done=True)]) == 5


# --- retries ---------------------------------------------------------------------------

def test_transient_failures_are_retried_with_doubling_delays_until_an_answer():
    clock, answers = FakeClock(), [Unreachable("down"), Unreachable("503", status=503),
                                   Unreachable("429", status=429), {"ok": True}]

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert Backoff(sleep=clock.sleep, clock=clock).call(call) == {"ok": True}
    assert clock.slept == [1, 2, 4]


def test_an_outage_longer_than_the_allowance_ends_with_the_last_error():
    clock, calls = FakeClock(), []

    def call():
        calls.append(clock.now)
        raise Unreachable("cannot reach", status=None)

    with pytest.raises(Unreachable):
        Backoff(give_up_after_s=20, sleep=clock.sleep, clock=clock).call(call)
    assert clock.slept == [1, 2, 4, 8] and clock.now - calls[0] <= 20


@pytest.mark.parametrize("error", [NotFoundError("nope", status=404), ApiError("bad", status=400),
                                   Unreachable("who are you", status=403)])
def test_answers_a_person_must_act_on_are_not_retried(error):
    clock = FakeClock()
    with pytest.raises(type(error)):
        Backoff(sleep=clock.sleep, clock=clock).call(lambda: (_ for _ in ()).throw(error))
    assert clock.slept == []


def test_delays_stop_growing_at_the_cap():
    clock, failures = FakeClock(), iter(range(8))

    def call():
        if next(failures, None) is not None:
            raise Unreachable("blip")
        return "ok"

    Backoff(max_delay_s=5, give_up_after_s=1000, sleep=clock.sleep, clock=clock).call(call)
    assert clock.slept == [1, 2, 4, 5, 5, 5, 5, 5]


# --- ID tokens -------------------------------------------------------------------------

def jwt(exp: float) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'aud': 'x'})}.c2ln"


def test_a_token_is_reused_until_near_its_expiry_then_replaced():
    clock, fetched = FakeClock(), []

    def fetch(audience):
        fetched.append(audience)
        return jwt(clock.now + 3600)

    tokens = target.IdTokens("https://f.run.app", fetch=fetch, clock=clock)
    first = tokens.get()
    clock.now += 3600 - target.REFRESH_MARGIN_S - 1
    assert tokens.get() == first and len(fetched) == 1
    clock.now += 2
    assert tokens.get() != first and fetched == ["https://f.run.app"] * 2


def test_a_short_lived_token_is_replaced_at_half_its_life():
    clock, count = FakeClock(), []
    tokens = target.IdTokens("a", fetch=lambda aud: count.append(1) or jwt(clock.now + 10), clock=clock)
    tokens.get()
    clock.now += 4
    tokens.get()
    assert len(count) == 1
    clock.now += 2
    tokens.get()
    assert len(count) == 2


def test_a_token_without_a_readable_expiry_is_kept_for_a_while_only():
    clock, count = FakeClock(), []
    tokens = target.IdTokens("a", fetch=lambda aud: count.append(1) or "opaque", clock=clock)
    tokens.get()
    clock.now += target.UNKNOWN_LIFETIME_S
    tokens.get()
    assert len(count) == 2 and target.expiry_of("opaque") is None


def test_an_invalidated_token_is_fetched_again():
    clock, count = FakeClock(), []
    tokens = target.IdTokens("a", fetch=lambda aud: count.append(1) or jwt(clock.now + 3600), clock=clock)
    tokens.get()
    tokens.invalidate()
    tokens.get()
    assert len(count) == 2


# --- the wait loop ---------------------------------------------------------------------

class ScriptedClient:
    """GET answers per id, in order; the last one repeats."""

    def __init__(self, script: dict[str, list]):
        self.script = script
        self.gets: list[str] = []

    def get(self, operation_id: str) -> dict:
        self.gets.append(operation_id)
        answers = self.script[operation_id]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def waiter(client, clock, interval_s=5.0) -> Waiter:
    return Waiter(client, Backoff(sleep=clock.sleep, clock=clock), interval_s=interval_s, sleep=clock.sleep,
                  clock=clock)


def test_wait_polls_each_unfinished_operation_until_all_are_done():
    clock = FakeClock()
    client = ScriptedClient({"a": [rec("RUNNING"), rec("SUCCEEDED")],
                             "b": [rec("RUNNING"), rec("RUNNING"), rec("FAILED")]})
    shown = []
    records = waiter(client, clock).wait(["a", "b", "a"], None, lambda rs, t: shown.append([r["state"] for r in rs]))
    assert [r["state"] for r in records] == ["SUCCEEDED", "FAILED"]
    assert client.gets == ["a", "b", "a", "b", "b"]  # a finished one is not read again
    assert shown[-1] == ["SUCCEEDED", "FAILED"] and clock.slept == [5, 5]


def test_wait_stops_at_its_timeout_with_the_records_as_they_stand():
    clock = FakeClock()
    client = ScriptedClient({"a": [rec("RUNNING")]})
    records = waiter(client, clock, interval_s=4).wait(["a"], 10, lambda rs, t: None)
    assert exit_code(records) == 8 and clock.slept == [4, 4, 2]


def test_wait_rides_out_a_blip_but_reports_an_unknown_operation_at_once():
    clock = FakeClock()
    client = ScriptedClient({"a": [rec("RUNNING"), Unreachable("503", status=503), rec("SUCCEEDED")]})
    assert exit_code(waiter(client, clock).wait(["a"], None, lambda rs, t: None)) == 0
    with pytest.raises(NotFoundError):
        waiter(ScriptedClient({"x": [NotFoundError("no", status=404)]}), clock).wait(["x"], None, lambda rs, t: None)


# --- output ----------------------------------------------------------------------------

def test_the_live_line_shows_state_progress_elapsed_and_polls():
    line = render.wait_line([rec("RUNNING", progress_percent=45, polls=7)], 62)
    assert line.split() == ["a" * 12, "RUNNING", "45%", "1m02s", "elapsed", "7", "polls"]
    many = render.wait_line([rec("RUNNING"), rec("SUCCEEDED"), rec("RUNNING")], 5)
    assert many.startswith("1/3 done (2 RUNNING, 1 SUCCEEDED)")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_the_live_line_is_rewritten_in_place_on_a_terminal_and_absent_elsewhere():
    tty, pipe = Tty(), io.StringIO()
    for out in (tty, pipe):
        line = render.LiveLine(out)
        line.show("one")
        line.show("two")
        line.close()
    assert tty.getvalue() == "\r\033[Kone\r\033[Ktwo\n" and pipe.getvalue() == ""


class RecordsClient:
    """GET /operations/{id}: each record as it stands, already finished."""

    def __init__(self, *records: dict):
        self.records = {r["id"]: r for r in records}

    def get(self, operation_id: str) -> dict:
        return self.records[operation_id]


def run_wait(argv: list[str], client, capsys) -> tuple[int, str, str]:
    args = build_parser().parse_args(["wait", *argv])
    return args.run(args, client), *capsys.readouterr()


BATCH = {**rec("SUCCEEDED"), "name": "projects/1/locations/us/operations/7", "items": {"total": 40, "failed": 7}}
CLEAN = {**rec("SUCCEEDED"), "id": "b" * 32, "items": {"total": 3, "failed": 0}}


def test_a_batch_that_succeeded_with_failed_items_says_so_on_stderr_and_how_to_list_them(capsys):
    code, out, err = run_wait([BATCH["id"], CLEAN["id"], "--local"], RecordsClient(BATCH, CLEAN), capsys)
    assert code == 0  # SUCCEEDED is what the exit code reports
    assert out.splitlines()[0].split() == [header for header, _ in render.LIST_COLUMNS]
    assert err.splitlines() == [f"7 of 40 items failed: lrowatch items {BATCH['id']} --failed --local"]


def test_with_json_stdout_stays_the_records_and_the_failed_items_note_goes_to_stderr(capsys):
    code, out, err = run_wait([BATCH["id"], "--json", "--url", "https://lro.example.run.app"],
                              RecordsClient(BATCH), capsys)
    assert json.loads(out) == {"operations": [BATCH]}
    assert err.strip() == (f"7 of 40 items failed: lrowatch items {BATCH['id']} --failed "
                           "--url https://lro.example.run.app")


def test_a_wait_without_failed_items_adds_nothing_on_stderr_and_escapes_an_apis_name(capsys):
    named = {**CLEAN, "name": "operations/\x1b[2Jx"}
    code, out, err = run_wait([CLEAN["id"]], RecordsClient(named), capsys)
    assert code == 0 and err == "" and "operations/\\x1b[2Jx" in out and "\x1b" not in out


# --- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--local", "list"], ["list", "--local"], ["--json", "--local", "status", "ID"], ["status", "ID", "--json", "--local"],
    ["--json", "status", "ID", "--local"], ["--url", "https://x", "wait", "A", "B"], ["wait", "A", "--url", "https://x"],
])
def test_common_options_work_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert (args.local or args.url == "https://x") and args.json == ("--json" in argv)


def test_an_option_given_before_the_subcommand_is_not_reset_by_the_subcommand():
    args = build_parser().parse_args(["--local", "--json", "wait", "A", "--timeout", "3"])
    assert args.local and args.json and args.url is None and args.timeout == 3


def test_version_prints_the_distributions_version(capsys):
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(["--version"])
    assert raised.value.code == 0 and capsys.readouterr().out.strip() == f"lrowatch {functions.__version__}"
