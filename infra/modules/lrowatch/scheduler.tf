# Cloud Scheduler: one poll run per tick, authenticated with an OIDC token of
# the scheduler's own service account (run.invoker on poll only, iam.tf).
#
# The attempt deadline equals poll's timeout, which exceeds the poll budget
# (precondition in functions.tf), so Scheduler never gives up on, and retries
# over, a run that is still within its budget. Failed attempts are not
# retried: the next tick is the retry, and a retried run would only overlap
# it (overlaps are harmless — operations are leased — but wasteful).

resource "google_cloud_scheduler_job" "poll" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-poll"
  description      = "lrowatch: one poll run of at most poll_budget_s seconds."
  schedule         = var.schedule
  time_zone        = var.time_zone
  attempt_deadline = "${var.poll_timeout_s}s"

  retry_config {
    retry_count          = 0
    min_backoff_duration = "5s"
    max_backoff_duration = "60s"
    max_doublings        = 2
    max_retry_duration   = "0s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.internal["poll"].service_config[0].uri
    body        = base64encode(jsonencode({ budget_s = var.poll_budget_s }))
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.this["scheduler"].email
      audience              = google_cloudfunctions2_function.internal["poll"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.service_invokers]
}
