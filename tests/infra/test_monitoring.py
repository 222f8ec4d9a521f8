"""infra/modules/lrowatch/monitoring.tf and dashboard.json: log-based metrics that match what the
functions really log, the alert policies the runbook promises, a dashboard whose
template renders to valid JSON on those metrics, `labels` on every resource that
takes them, and default_policy bounded as functions/domain/policy.py bounds it."""
from __future__ import annotations

import dataclasses
import json
import re

from functions.domain import policy
from functions.services.poll import RunSummary
from tests.infra.test_provider_schema import SCHEMA, declared
from tests.infra.test_terraform_wiring import INFRA, ROOT, block

from tests.infra.test_terraform_wiring import INFRA_MODEL as infra

SUMMARY_FIELDS = {f.name for f in dataclasses.fields(RunSummary)}
METRICS = infra.locals["log_metrics"]
ALERTS = infra.resources["google_monitoring_alert_policy"]


def condition(name: str) -> dict:
    conditions = block(ALERTS[name], "conditions")
    [(kind, body)] = [(k, v) for k, v in conditions.items() if k.startswith("condition_")]
    return {"kind": kind, **(body[0] if isinstance(body, list) else body)}


def test_log_metrics_cover_poll_runs_errors_lag_and_outbox_backlog():
    assert set(METRICS) == {"poll_runs", "poll_runs_with_errors", "errors", "poll_lag_p95", "outbox_backlog"}
    metric = infra.resource("google_logging_metric", "this")
    assert "local.log_metrics" in metric["for_each"] and "labels.component" in str(metric["label_extractors"])


def test_metric_filters_match_what_poll_logs_and_where_cloud_logging_puts_the_component():
    poll_code = (ROOT / "functions" / "services" / "poll.py").read_text()
    finished = infra.locals["poll_finished"]
    assert 'jsonPayload.message="poll run finished"' in finished and 'log.info("poll run finished"' in poll_code
    assert 'labels.component="poll"' in finished
    assert not [n for n, spec in METRICS.items() if "logging.googleapis.com/labels" in spec["filter"]]
    for name, spec in METRICS.items():
        for field in re.findall(r"jsonPayload\.summary\.([a-z0-9_]+)", spec["filter"] + str(spec["field"])):
            assert field in SUMMARY_FIELDS, (name, field)


def test_each_alert_policy_notifies_the_channels_variable_and_carries_the_labels():
    assert set(ALERTS) == {"poll_stopped", "dead_letters", "push_backlog", "poll_error_share", "poll_lag",
                           "function_5xx"}
    for name, body in ALERTS.items():
        assert body["notification_channels"] == "${var.notification_channels}", name
        assert body["user_labels"] == "${var.labels}", name
        assert "docs/operations.md" in str(body) or "runbook" in str(body), name


def test_no_poll_run_in_five_minutes_is_an_absence_of_the_poll_runs_metric():
    c = condition("poll_stopped")
    assert c["kind"] == "condition_absent" and c["duration"] == "300s"
    assert 'log_metric_types["poll_runs"]' in c["filter"]


def test_dead_letter_and_backlog_alerts_cover_every_hold_and_push_subscription():
    dead, backlog = condition("dead_letters"), condition("push_backlog")
    assert "num_undelivered_messages" in dead["filter"] and "quoted_dead_letter_holds" in dead["filter"]
    assert dead["comparison"] == "COMPARISON_GT" and dead["threshold_value"] == 0
    assert "google_pubsub_subscription.dead_letter_hold" in infra.locals["quoted_dead_letter_holds"]
    assert "oldest_unacked_message_age" in backlog["filter"] and "quoted_push_subs" in backlog["filter"]
    assert "google_pubsub_subscription.push" in infra.locals["quoted_push_subs"]
    assert backlog["threshold_value"] == "${var.alert_oldest_unacked_s}"


def test_error_share_lag_and_5xx_alerts_are_ratios_or_thresholds_on_the_right_metrics():
    share = condition("poll_error_share")
    assert 'poll_runs_with_errors' in share["filter"] and 'log_metric_types["poll_runs"]' in share["denominator_filter"]
    assert share["threshold_value"] == "${var.alert_poll_error_share}"
    lag = condition("poll_lag")
    assert "poll_lag_p95" in lag["filter"] and lag["threshold_value"] == "${var.alert_lag_p95_s}"
    assert block(lag, "aggregations")["per_series_aligner"] == "ALIGN_PERCENTILE_95"
    errors = condition("function_5xx")
    assert 'response_code_class="5xx"' in errors["filter"]
    assert "5xx" not in errors["denominator_filter"] and "quoted_functions" in errors["filter"]
    assert "google_cloudfunctions2_function.internal" in str(infra.locals["function_services"])


def render_dashboard() -> dict:
    dashboard = infra.resource("google_monitoring_dashboard", "this")
    passed = set(re.findall(r"\b([a-z_0-9]+)\s*=", dashboard["dashboard_json"]))
    template = (INFRA / "dashboard.json").read_text()
    used = set(re.findall(r"\$\{([a-z_0-9]+)\}", template))
    assert used <= passed, used - passed
    text = template
    for name in used:
        text = text.replace("${" + name + "}", f"logging.googleapis.com/user/lro/{name}" if name != "name_prefix" else "lro")
    return json.loads(text)


def test_the_dashboard_renders_to_json_with_a_chart_for_each_metric_and_subscription_health():
    dashboard = render_dashboard()
    filters = [t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
               for t in dashboard["mosaicLayout"]["tiles"]]
    for metric in METRICS:
        assert any(f"user/lro/{metric}\"" in f or f"user/lro/{metric.replace('_with_errors', '_errors')}\"" in f
                   for f in filters), metric
    assert any("oldest_unacked_message_age" in f for f in filters)
    assert any("-dlq-hold" in f and "num_undelivered_messages" in f for f in filters)
    assert any("5xx" in f for f in filters)


def test_every_resource_that_takes_labels_gets_the_labels_variable():
    missing = []
    for rtype, address, body in declared():
        schema = SCHEMA["resources"][rtype]
        for key in ("labels", "user_labels"):
            if key in schema and not rtype.startswith("data.") and body.get(key) != "${var.labels}":
                missing.append(f"{address}.{key}")
    assert missing == []


def test_default_policy_is_validated_with_the_bounds_policy_py_enforces():
    condition_text = infra.variables["default_policy"]["validation"][0]["condition"]
    bounds = {name: (float(low), float(high)) for name, low, high in
              re.findall(r"([a-z_]+)\s*=\s*\[([\d.]+),\s*([\d.]+)\]", condition_text)}
    assert bounds == {k: (float(lo), float(hi)) for k, (lo, hi) in policy._LIMITS.items()}
    assert all(f"{field}" in str(infra.variables["default_policy"]["type"]) for field in policy._LIMITS)


def test_the_runbook_filters_are_what_cloud_logging_stores():
    runbook = (ROOT / "docs" / "operations.md").read_text()
    filters = re.findall(r"```\n(.*?)```", runbook, re.S) + re.findall(r"^\|[^|]*\| `([^`]*)` \|$", runbook, re.M)
    assert any('labels.component="poll"' in f for f in filters)
    assert not [f for f in filters if "logging.googleapis.com/labels" in f]
