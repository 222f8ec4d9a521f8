# Observability as code: log-based metrics from the functions' structured logs,
# alert policies on them and on Pub/Sub and Cloud Run's own metrics, and a
# dashboard (dashboard.json). docs/operations.md says what to do when each fires.
#
# Cloud Logging moves each entry's "logging.googleapis.com/labels" into the
# entry's labels, so the function shows as labels.component (functions/logs.py).
# Functions (2nd gen) log as Cloud Run revisions named after the function.

locals {
  lrowatch_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\""
  poll_finished = "${local.lrowatch_logs} AND labels.component=\"poll\" AND jsonPayload.message=\"poll run finished\""

  # metric.type of each log-based metric, by key of google_logging_metric.this.
  log_metric_types = { for k, m in google_logging_metric.this : k => "logging.googleapis.com/user/${m.name}" }

  function_services = concat(
    [google_cloudfunctions2_function.submit.name],
    [for f in google_cloudfunctions2_function.internal : f.name],
  )
  quoted_functions         = join(",", [for name in local.function_services : "\"${name}\""])
  quoted_push_subs         = join(",", [for s in google_pubsub_subscription.push : "\"${s.name}\""])
  quoted_dead_letter_holds = join(",", [for s in google_pubsub_subscription.dead_letter_hold : "\"${s.name}\""])

  runbook = "See docs/operations.md in the lrowatch repository."

  # One entry per log-based metric: filter, and for distributions the field.
  log_metrics = {
    # Every poll run that finished (Cloud Scheduler ticks, shard runs, manual runs).
    poll_runs = {
      description = "lrowatch: poll runs finished"
      filter      = local.poll_finished
      field       = null
      unit        = "1"
    }
    # Poll runs whose summary counts transient API errors (429, 5xx, timeouts).
    poll_runs_with_errors = {
      description = "lrowatch: poll runs with transient API errors"
      filter      = "${local.poll_finished} AND jsonPayload.summary.errors>0"
      field       = null
      unit        = "1"
    }
    # Entries at ERROR or above from any lrowatch function, by component.
    errors = {
      description = "lrowatch: log entries at ERROR or above, by function"
      filter      = "${local.lrowatch_logs} AND severity>=ERROR"
      field       = null
      unit        = "1"
    }
    # Each run's p95 lag: how late polls were against their due time.
    poll_lag_p95 = {
      description = "lrowatch: poll runs' p95 lag against due time"
      filter      = "${local.poll_finished} AND jsonPayload.summary.lag_p95_s>=0"
      field       = "jsonPayload.summary.lag_p95_s"
      unit        = "s"
    }
    # Events a run had to leave in the outbox (Pub/Sub refused them): a later run republishes them.
    outbox_backlog = {
      description = "lrowatch: events left in the outbox by a poll run"
      filter      = "${local.poll_finished} AND jsonPayload.summary.publish_errors>=0"
      field       = "jsonPayload.summary.publish_errors"
      unit        = "1"
    }
  }
}

# --- Log-based metrics ---------------------------------------------------------

resource "google_logging_metric" "this" {
  for_each = local.log_metrics

  project     = var.project_id
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  label_extractors = each.key == "errors" ? { component = "EXTRACT(labels.component)" } : {}
  value_extractor  = each.value.field == null ? null : "EXTRACT(${each.value.field})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = each.value.field == null ? "INT64" : "DISTRIBUTION"
    unit         = each.value.unit
    display_name = each.value.description

    dynamic "labels" {
      for_each = each.key == "errors" ? ["component"] : []
      content {
        key         = labels.value
        value_type  = "STRING"
        description = "the function (submit, submit_pubsub, poll, handle)"
      }
    }
  }

  dynamic "bucket_options" {
    for_each = each.value.field == null ? [] : [each.key]
    content {
      exponential_buckets {
        num_finite_buckets = 32
        growth_factor      = 1.5
        scale              = 0.05
      }
    }
  }
}

# --- Alert policies ------------------------------------------------------------

resource "google_monitoring_alert_policy" "poll_stopped" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): no poll run finished in 5 minutes"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "no poll run finished"
    condition_absent {
      filter   = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.log_metric_types["poll_runs"]}\""
      duration = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Cloud Scheduler is not calling poll, or every run fails before its summary. ${local.runbook} (Stuck operations)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): messages on a dead-letter hold subscription"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "dead letters held"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.labels.subscription_id=one_of(${local.quoted_dead_letter_holds})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "A push delivery failed max_delivery_attempts times. Inspect and replay: ${local.runbook} (Dead letters)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "push_backlog" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): push subscription falling behind"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "oldest unacked message too old"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.labels.subscription_id=one_of(${local.quoted_push_subs})"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_unacked_s
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "A function keeps refusing or timing out on pushed messages. ${local.runbook} (Where to look)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "poll_error_share" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): poll runs meeting API errors"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "share of poll runs with transient API errors"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.log_metric_types["poll_runs_with_errors"]}\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.log_metric_types["poll_runs"]}\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_poll_error_share
      duration           = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Google's API answers 429/5xx or times out (quota? outage?). Look at last_error on the records. ${local.runbook} (Reading the poll summary)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "poll_lag" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): polls running late"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "poll lag p95 over ${var.alert_lag_p95_s} s"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.log_metric_types["poll_lag_p95"]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_lag_p95_s
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_95"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  documentation {
    content   = "The poller cannot keep up with the due operations. ${local.runbook} (Cost and load)."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "function_5xx" {
  project               = var.project_id
  display_name          = "lrowatch (${var.name_prefix}): functions answering 5xx"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "share of requests answered 5xx, per function"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\" AND resource.labels.service_name=one_of(${local.quoted_functions})"
      denominator_filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=one_of(${local.quoted_functions})"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_5xx_share
      duration           = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    content   = "Crashes, timeouts, or transient failures asking Pub/Sub to redeliver. ${local.runbook} (Where to look: severity>=ERROR)."
    mime_type = "text/markdown"
  }
}

# --- Dashboard -----------------------------------------------------------------

resource "google_monitoring_dashboard" "this" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboard.json", {
    name_prefix      = var.name_prefix
    poll_runs        = local.log_metric_types["poll_runs"]
    poll_runs_errors = local.log_metric_types["poll_runs_with_errors"]
    errors           = local.log_metric_types["errors"]
    poll_lag_p95     = local.log_metric_types["poll_lag_p95"]
    outbox_backlog   = local.log_metric_types["outbox_backlog"]
  })
}
