# What a user needs after `terraform apply`: where to call, what to subscribe
# to, and which identities to grant further access to.

output "submit_url" {
  description = "HTTPS endpoint of submit (IAM-authenticated: send an ID token with audience = this URL)."
  value       = google_cloudfunctions2_function.submit.service_config[0].uri
}

output "function_urls" {
  description = "run.app URL of each function."
  value       = { for k, f in local.functions : k => f.service_config[0].uri }
}

output "topics" {
  description = "Full ids of the contract's topics, and of poll's shard-run topic (poll_shards)."
  value       = { for k, t in google_pubsub_topic.contract : k => t.id }
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each push subscription."
  value       = { for k, t in google_pubsub_topic.dead_letter : k => t.id }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding each push subscription's dead letters for replay."
  value       = { for k, s in google_pubsub_subscription.dead_letter_hold : k => s.id }
}

output "push_subscriptions" {
  description = "The managed push subscriptions."
  value       = { for k, s in google_pubsub_subscription.push : k => s.id }
}

output "service_accounts" {
  description = "Email of every service account lrowatch runs as."
  value       = { for k, a in google_service_account.this : k => a.email }
}

output "handle_service_account" {
  description = "Grant this account roles/pubsub.publisher on any notify_topic outside var.notify_topics."
  value       = google_service_account.this["handle"].email
}

output "poll_service_account" {
  description = "Grant this account read access to the operations it tracks (and serviceusage.serviceUsageConsumer on quota projects)."
  value       = google_service_account.this["poll"].email
}

output "scheduler_job" {
  description = "Cloud Scheduler job that drives poll (gcloud scheduler jobs run ... to poll now)."
  value       = google_cloud_scheduler_job.poll.id
}

output "alert_policies" {
  description = "Alert policy names (projects/P/alertPolicies/ID), by alert."
  value = {
    poll_stopped     = google_monitoring_alert_policy.poll_stopped.name
    dead_letters     = google_monitoring_alert_policy.dead_letters.name
    push_backlog     = google_monitoring_alert_policy.push_backlog.name
    poll_error_share = google_monitoring_alert_policy.poll_error_share.name
    poll_lag         = google_monitoring_alert_policy.poll_lag.name
    function_5xx     = google_monitoring_alert_policy.function_5xx.name
  }
}

output "dashboard" {
  description = "The Cloud Monitoring dashboard's id."
  value       = google_monitoring_dashboard.this.id
}
