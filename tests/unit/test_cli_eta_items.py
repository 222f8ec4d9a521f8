"""The CLI's ETA text and failed-item output (pure: a fake client, no I/O)."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from functions.cli import build_parser, commands, render

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
OP_ID = "0123456789abcdef0123456789abcdef"


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("point, low, high, text", [
    (720, 480, 1200, "~12 min left, 8–20"),
    (45, 30, 70, "~45 s left, 30–70"),
    (7200, 5000, 14000, "~2 h left, 1.4–3.9"),
    (3 * 86400, 2 * 86400, 5 * 86400, "~3 days left, 2–5"),
    (-5, -20, 100, "any moment now, up to ~1.7 min"),
    (-50, -100, -10, "past its estimate"),
])
def test_the_eta_reads_as_time_left_with_its_interval(point, low, high, text):
    assert render.eta({"eta": at(point), "eta_low": at(low), "eta_high": at(high)}, NOW) == text


def test_no_eta_shows_nothing():
    assert render.eta({"state": "RUNNING"}, NOW) is None


def test_status_shows_the_eta_and_the_failed_count(monkeypatch):
    out = io.StringIO()
    record = {"id": OP_ID, "state": "RUNNING", "eta": at(600), "eta_low": at(300), "eta_high": at(900),
              "items": {"total": 1500, "failed": 1200, "failed_kept": 1000}}
    monkeypatch.setattr(render, "datetime", _Clock)
    render.record(record, out)
    lines = dict(line.split(None, 1) for line in out.getvalue().splitlines())
    assert lines["eta"] == "~10 min left, 5–15"
    assert lines["items"] == "1500 items, 1200 failed (first 1000 kept)"


def test_status_shows_when_the_api_says_it_started_only_when_it_said():
    started, plain = io.StringIO(), io.StringIO()
    render.record({"id": OP_ID, "state": "RUNNING", "started_at": at(-600), "submitted_at": at(0)}, started)
    render.record({"id": OP_ID, "state": "RUNNING", "started_at": None, "submitted_at": at(0)}, plain)
    assert dict(line.split(None, 1) for line in started.getvalue().splitlines())["started"] == at(-600)
    assert "started" not in plain.getvalue()


def test_a_watch_line_shows_the_eta_from_the_events_own_time():
    event = {"type": "lro.state_changed", "operation": {"id": OP_ID}, "sequence": 1, "previous_state": "PENDING",
             "state": "RUNNING", "observed_at": at(0), "eta": at(720), "eta_low": at(480), "eta_high": at(1200),
             "items": {"total": 3, "failed": 1}}
    assert "~12 min left, 8–20; 3 items, 1 failed" in render.event_line(event)


def test_a_wait_line_shows_the_eta_and_the_failed_count(monkeypatch):
    monkeypatch.setattr(render, "datetime", _Clock)
    op = {"id": OP_ID, "state": "RUNNING", "progress_percent": 40, "eta": at(720), "eta_low": at(480),
          "eta_high": at(1200), "items": {"total": 9, "failed": 2}, "polls": 4}
    assert render.wait_line([op], 65) == f"{OP_ID[:12]}  RUNNING  40%  ~12 min left, 8–20  2 failed  1m05s elapsed  4 polls"


class _Clock(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


# ---- lrowatch items ----------------------------------------------------------------

FAILED = [{"index": i, "input": f"gs://in/doc-{i}.pdf", "status": {"code": 3, "message": "bad, \"really\""}}
          for i in range(5)]


class FakeClient:
    """Serves FAILED two at a time, as GET /operations/{id}/items pages."""

    def __init__(self, failed=FAILED, total=None):
        self.failed, self.total, self.calls = failed, total, []

    def items(self, operation_id, params):
        self.calls.append((operation_id, dict(params)))
        start = int(params.get("page_token") or 0)
        page = {"items": self.failed[start:start + 2], "total_size": self.total or len(self.failed)}
        if start + 2 < len(self.failed):
            page["next_page_token"] = str(start + 2)
        return page


def run(argv, client, capsys):
    args = build_parser().parse_args(argv)
    code = args.run(args, client)
    return code, *capsys.readouterr()


def test_items_prints_every_failed_input_one_per_line_across_pages(capsys):
    client = FakeClient()
    code, out, err = run(["items", OP_ID, "--failed"], client, capsys)
    assert code == 0 and out.splitlines() == [f"gs://in/doc-{i}.pdf" for i in range(5)]
    assert [c[1].get("page_token") for c in client.calls] == [None, "2", "4"]
    assert all(c[1]["state"] == "failed" for c in client.calls) and err == ""


def test_items_csv_has_a_header_and_quotes_messages(capsys):
    code, out, _ = run(["items", OP_ID, "--csv"], FakeClient(), capsys)
    lines = out.splitlines()
    assert lines[0] == "index,input,code,message,human_review_state"
    assert lines[1] == '0,gs://in/doc-0.pdf,3,"bad, ""really""",'
    assert len(lines) == 6


@pytest.mark.parametrize("text", ["=1+2", "@SUM(A1)", "+cmd|' /C calc'!A0", "-x", "\tx", "\rx", "\0x",
                                  '=HYPERLINK("https://evil.example","open")'])
def test_items_csv_keeps_a_spreadsheet_from_running_a_cell_as_a_formula(text, capsys):
    hostile = [{"index": 0, "input": text, "status": {"code": 3, "message": text}}]
    code, out, _ = run(["items", OP_ID, "--csv"], FakeClient(hostile), capsys)
    header, row = csv.reader(io.StringIO(out, newline=""))
    assert row[1] == row[3] == f"'{text}"


def test_items_csv_quotes_a_carriage_return_so_it_cannot_start_a_row_of_its_own(capsys):
    hostile = [{"index": 0, "input": "gs://in/a.pdf", "status": {"code": 3, "message": "bad\r=1+2"}}]
    code, out, _ = run(["items", OP_ID, "--csv"], FakeClient(hostile), capsys)
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert len(rows) == 2 and rows[1][3] == "bad\r=1+2"


def test_items_csv_keeps_inputs_and_numbers_as_they_are():
    out = io.StringIO()
    render.items_csv([{"index": 7, "input": "gs://in/a=b+c-d@e.pdf", "status": {"code": -3, "message": "x = 1"}}], out)
    assert out.getvalue().splitlines()[1] == "7,gs://in/a=b+c-d@e.pdf,-3,x = 1,"


def test_items_json_holds_the_items_and_the_true_count(capsys):
    code, out, err = run(["items", OP_ID, "--json"], FakeClient(total=1500), capsys)
    body = json.loads(out)
    assert body == {"items": FAILED, "total_size": 1500}
    assert "1500 items failed; lrowatch keeps the first 5" in err


def test_a_vision_import_item_without_an_input_shows_its_csv_line_and_why(capsys):
    vision = [{"index": 0, "input": None, "status": {"code": 3, "message": "bad bounding poly"}},
              {"index": 4, "input": None, "status": {"code": 5, "message": "gs://b/x.jpg\x1b[8m not found"}},
              {"index": 9, "input": None, "status": {"code": 99, "message": ""}}]
    code, out, err = run(["items", OP_ID, "--failed"], FakeClient(vision), capsys)
    assert code == 0 and out.splitlines() == ["csv line 1: 3 INVALID_ARGUMENT: bad bounding poly",
                                              "csv line 5: 5 NOT_FOUND: gs://b/x.jpg\\x1b[8m not found",
                                              "csv line 10: 99"]
    assert "3 failed item(s) name no input" in err and "counted from 1; the index in --csv and --json is N-1" in err


def test_items_keep_the_apis_order_when_only_some_name_an_input(capsys):
    mixed = [{"index": 0, "input": "gs://in/a.jpg", "status": {"code": 3, "message": "x"}},
             {"index": 1, "input": None, "status": {"code": 13, "message": "internal"}}]
    code, out, err = run(["items", OP_ID], FakeClient(mixed), capsys)
    assert out.splitlines() == ["gs://in/a.jpg", "csv line 2: 13 INTERNAL: internal"]
    assert err.count("\n") == 1  # one note: the item without an input


def test_items_show_an_inputs_control_characters_escaped_and_say_json_has_them_exact(capsys):
    names = [{"index": 0, "input": "gs://in/\x1b]8;;https://evil.example\x07doc.pdf", "status": {"code": 3}},
             {"index": 1, "input": "gs://in/\u202efdp.exe", "status": {"code": 3}},
             {"index": 2, "input": "gs://in/plain.pdf", "status": {"code": 3}}]
    code, out, err = run(["items", OP_ID, "--failed"], FakeClient(names), capsys)
    assert out.splitlines() == ["gs://in/\\x1b]8;;https://evil.example\\x07doc.pdf", "gs://in/\\u202efdp.exe",
                                "gs://in/plain.pdf"]
    assert "2 input(s) hold control characters, shown escaped" in err and "--json has them exact" in err
    code, out, _ = run(["items", OP_ID, "--json"], FakeClient(names), capsys)
    assert json.loads(out)["items"] == names


def test_no_failed_items_says_so(capsys):
    code, out, err = run(["items", OP_ID], FakeClient([]), capsys)
    assert code == 0 and out == "" and "no failed items" in err
