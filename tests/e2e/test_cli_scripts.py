"""The CLI as scripts and people use it, against the local stack (functions as
processes, emulators, simulator): `lrowatch wait` with one exit code per
outcome, transient failures ridden out, a short-lived ID token renewed before
it expires (behind an https front that refuses expired tokens the way Cloud
Run does), and every command the README, the help and the demo print."""
from __future__ import annotations

import base64
import json
import re
import shlex
import time
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
import requests

import functions.cli
from functions.cli import target
from functions.local.demo import TRY_COMMANDS
from tests.e2e.helpers import polling, run_cli, serve_https

FAST = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 1, "jitter": 0}
WAIT = ["--interval", "0.2", "--timeout", "60"]


pytestmark = pytest.mark.usefixtures("demo_file")


def track(capsys, op: dict, policy: dict = FAST) -> str:
    code, out, err = run_cli(capsys, "--local", "--json", "submit", op["url"], "--policy", json.dumps(policy))
    assert code == 0, err
    return json.loads(out)["operation"]["id"]


def test_wait_exits_0_when_every_operation_succeeded_and_prints_the_final_records(stack, sim, capsys):
    ids = [track(capsys, sim.create(kind="documentai", running_s=1, items=2)) for _ in range(2)]
    with polling(stack):
        code, out, err = run_cli(capsys, "--local", "--json", "wait", *ids, *WAIT)
    assert code == 0, err
    records = json.loads(out)["operations"]
    assert [r["id"] for r in records] == ids and {r["state"] for r in records} == {"SUCCEEDED"}


def test_wait_exits_5_when_an_operation_failed(stack, sim, capsys):
    operation_id = track(capsys, sim.create(kind="vision", running_s=0.5, outcome="failed"))
    with polling(stack):
        code, out, err = run_cli(capsys, "wait", operation_id, "--local", *WAIT)
    assert code == 5, err
    assert "FAILED" in out.splitlines()[1]  # the table's row


def test_wait_exits_6_when_an_operation_was_cancelled(stack, sim, capsys):
    operation_id = track(capsys, sim.create(kind="documentai", running_s=120, cancel_delay_s=0.5))
    assert run_cli(capsys, "cancel", operation_id, "--local")[0] == 0
    with polling(stack):
        code, _, err = run_cli(capsys, "wait", operation_id, "--local", *WAIT)
    assert code == 6, err


def test_wait_exits_7_when_lrowatch_stopped_tracking_expired_or_timed_out(stack, sim, capsys):
    timed_out = track(capsys, sim.create(kind="vision", running_s=600), {**FAST, "deadline_s": 1})
    op = sim.create(kind="documentai", running_s=600)
    expired = track(capsys, op)
    with polling(stack):
        for _ in range(50):  # seen once, then gone: the API's retention has passed
            if run_cli(capsys, "status", expired, "--local", "--json")[1].count('"RUNNING"'):
                break
            time.sleep(0.2)
        sim.expire(op["name"], op.get("host"))
        code, out, err = run_cli(capsys, "wait", timed_out, expired, "--local", "--json", *WAIT)
    assert code == 7, err
    assert sorted(r["state"] for r in json.loads(out)["operations"]) == ["EXPIRED", "TIMED_OUT"]


def test_wait_exits_8_when_its_own_timeout_passes_first(sim, capsys):
    operation_id = track(capsys, sim.create(kind="vision", running_s=600))
    started = time.monotonic()
    code, out, err = run_cli(capsys, "wait", operation_id, "--local", "--interval", "0.2", "--timeout", "1")
    assert code == 8 and time.monotonic() - started < 10
    assert "--timeout 1 s passed" in err and "PENDING" in out


def test_wait_exits_4_at_once_for_an_operation_nobody_tracks(capsys):
    code, _, err = run_cli(capsys, "wait", uuid.uuid4().hex, "--local", *WAIT)
    assert code == 4 and "lrowatch list" in err


def test_wait_exits_3_when_lrowatch_stays_unreachable_after_retrying(capsys):
    started = time.monotonic()
    code, _, err = run_cli(capsys, "wait", "0" * 32, "--url", "http://127.0.0.1:9", "--max-unavailable", "2.5")
    assert code == 3 and "cannot reach" in err
    assert err.count("retrying in") == 1  # after 1 s; the next 2 s would pass the 2.5 s allowance
    assert time.monotonic() - started < 10


# --- a deployed-like lrowatch: https, ID tokens that expire, a flaky front -----------------------

def short_lived_token(audience: str, lifetime_s: float) -> str:
    """An unsigned JWT with Google ID token claims: the CLI reads `exp`, the front checks it."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    claims = {"aud": audience, "exp": time.time() + lifetime_s, "jti": uuid.uuid4().hex}
    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


class AuthFront:
    """An https front for the local submit function that acts like Cloud Run's: a bearer
    token whose audience is wrong or whose `exp` has passed gets 401. It also answers 503
    to the first `fail_first` requests, like a cold or overloaded service."""

    def __init__(self, directory, upstream: str, fail_first: int = 0):
        self.refused: list[str] = []
        self.tokens: set[str] = set()
        self.served = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                claims = _claims(token)
                if claims.get("aud") != front.url or claims.get("exp", 0) <= time.time():
                    front.refused.append(token)
                    return self._answer(401, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
                front.tokens.add(token)
                if front.served < fail_first:
                    front.served += 1
                    return self._answer(503, b'{"error": {"code": 503, "status": "UNAVAILABLE"}}')
                front.served += 1
                answer = requests.get(upstream + self.path, timeout=10)
                self._answer(answer.status_code, answer.content)

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self.server, origin, self.cert = serve_https(Handler, directory, "lrowatch test front")
        self.url = origin

    def close(self):
        self.server.shutdown()


def _claims(token: str) -> dict:
    expiry = target.expiry_of(token)
    if expiry is None:
        return {}
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_wait_renews_a_short_lived_token_before_expiry_and_rides_out_503s(stack, sim, capsys, tmp_path,
                                                                          monkeypatch):
    front = AuthFront(tmp_path, stack.urls["submit"], fail_first=2)
    minted: list[str] = []

    def id_token(audience):
        minted.append(audience)
        return short_lived_token(audience, lifetime_s=3)

    monkeypatch.setattr(target, "id_token", id_token)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(front.cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        operation_id = track(capsys, sim.create(kind="documentai", running_s=7))
        with polling(stack):
            code, out, err = run_cli(capsys, "wait", operation_id, "--url", front.url, "--json", *WAIT)
    finally:
        front.close()
    assert code == 0, err
    assert json.loads(out)["operations"][0]["state"] == "SUCCEEDED"
    assert err.count("retrying in") == 2  # the two 503s, each retried
    assert front.refused == []  # never sent an expired token
    assert len(front.tokens) >= 3 and set(minted) == {front.url}  # renewed, for the function's origin


# --- every command the README, the help text and the demo print ------------------------------

ROOT = target._REPO_ROOT
DOCAI_TYPE = "type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata"


def documented_commands() -> list[str]:
    """`lrowatch …` lines of the README's shell blocks, the CLI's help and the demo's hint."""
    readme = ROOT.joinpath("README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += (functions.cli.__doc__ or "").splitlines() + list(TRY_COMMANDS)
    return [line.strip() for line in lines if line.strip().startswith("lrowatch ")]


def runnable(command: str, values: dict[str, str]) -> list[str]:
    """The command's argv, without comments and shell chaining, placeholders filled in,
    and a bound on commands that follow an operation until it ends."""
    command = re.split(r"  #|&&| > ", command)[0].strip()
    for placeholder, value in values.items():
        command = re.sub(rf"(?<![\w/-]){re.escape(placeholder)}(?![\w/-])", value, command)
    argv = shlex.split(command)[1:]
    if argv and {"watch", "wait"} & set(argv) and "--timeout" not in argv:
        argv += ["--timeout", "30", "--interval", "0.3"]
    return argv


def test_documented_commands_are_found_where_they_are_printed():
    commands = documented_commands()
    assert any(c.startswith("lrowatch --local list") for c in commands)  # the demo's hint
    assert sum("wait" in c for c in commands) >= 2 and len(commands) >= 12


def test_every_command_the_readme_the_help_and_the_demo_print_runs(stack, sim, capsys, tmp_path, monkeypatch):
    op = sim.create(kind="documentai", running_s=2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "started.json").write_text(json.dumps({
        "name": sim.create(kind="documentai", running_s=2)["name"], "metadata": {"@type": DOCAI_TYPE}}))
    operation_id = track(capsys, op)
    # The README's submit lines are alternatives: each gets its own operation (the same
    # operation submitted again with other labels is, rightly, 409 ALREADY_EXISTS).
    values = {
        "https://us-documentai.googleapis.com/v1/projects/123456/locations/us/operations/OPID": op["url"],
        "projects/123456/locations/us/operations/OPID": sim.create(kind="documentai", running_s=2)["name"],
        "projects/1/locations/us/operations/42": sim.create(kind="documentai", running_s=2)["name"],
        "ID": operation_id,
    }
    hints_run = 0
    with polling(stack):
        for command in documented_commands():
            code, out, err = run_cli(capsys, *runnable(command, values))
            assert code == 0, f"{command}: {err}"
            # Commands the CLI itself suggests (next: …, more: …, lrowatch watch …) run too.
            for hint in re.findall(r"(?:next|more): (lrowatch [^\n(]+)|^  (lrowatch [^\n]+)", out + err, re.M):
                hinted = runnable("".join(hint), values)
                assert run_cli(capsys, *hinted)[0] == 0, f"{command} suggested {hint}"
                hints_run += 1
    assert hints_run >= 2  # submit's "next: lrowatch watch ID --local", at least
