# Pub/Sub: the contract's three topics, and explicitly managed push
# subscriptions (a function's event_trigger cannot express a dead-letter
# policy or message ordering). Each push subscription:
#   - pushes to the function's run.app URL (internal ingress accepts Pub/Sub
#     from the same project only on that URL) with an OIDC token minted for
#     the dedicated pusher service account;
#   - has an ack deadline equal to the handler timeout;
#   - retries with exponential backoff, then dead-letters after
#     var.max_delivery_attempts to its own dead-letter topic, whose pull "hold"
#     subscription keeps dead letters for inspection and replay.
#
# Topics use Google-managed encryption keys; see the checkov skip comments.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # One entry per push subscription: its name, from which its dead-letter
  # topic and hold subscription are named.
  push_subscription_names = {
    events      = "${var.name_prefix}-events-to-handle"
    commands    = "${var.name_prefix}-commands-to-handle"
    submissions = "${var.name_prefix}-submissions-to-submit"
  }
}

# --- The contract's topics ---------------------------------------------------

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  project = var.project_id
  name    = var.events_topic
}

resource "google_pubsub_topic" "commands" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  project = var.project_id
  name    = var.commands_topic
}

resource "google_pubsub_topic" "submissions" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  project = var.project_id
  name    = var.submissions_topic
}

# --- Dead-letter topics, one per push subscription ---------------------------

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  for_each = local.push_subscription_names

  project = var.project_id
  name    = "${each.value}-dlq"
}

# Pull subscriptions that keep dead letters until someone replays or drops
# them (they are never pushed anywhere and never expire).
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = local.push_subscription_names

  project                    = var.project_id
  name                       = "${each.value}-dlq-hold"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# --- Push subscriptions ------------------------------------------------------

# State-change events -> handle, in order per operation (ordering key = id).
resource "google_pubsub_subscription" "events_to_handle" {
  project                    = var.project_id
  name                       = local.push_subscription_names["events"]
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = var.handler_timeout_s
  message_retention_duration = var.message_retention
  enable_message_ordering    = true

  push_config {
    push_endpoint = google_cloudfunctions2_function.handle.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pusher.email
      audience              = google_cloudfunctions2_function.handle.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["events"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.pusher_invokes_handle,
  ]
}

# Commands (cancellation requests) -> handle.
resource "google_pubsub_subscription" "commands_to_handle" {
  project                    = var.project_id
  name                       = local.push_subscription_names["commands"]
  topic                      = google_pubsub_topic.commands.id
  ack_deadline_seconds       = var.handler_timeout_s
  message_retention_duration = var.message_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.handle.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pusher.email
      audience              = google_cloudfunctions2_function.handle.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["commands"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.pusher_invokes_handle,
  ]
}

# Submissions from other systems -> submit_pubsub.
resource "google_pubsub_subscription" "submissions_to_submit" {
  project                    = var.project_id
  name                       = local.push_subscription_names["submissions"]
  topic                      = google_pubsub_topic.submissions.id
  ack_deadline_seconds       = var.handler_timeout_s
  message_retention_duration = var.message_retention

  push_config {
    push_endpoint = google_cloudfunctions2_function.submit_pubsub.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pusher.email
      audience              = google_cloudfunctions2_function.submit_pubsub.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter["submissions"].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.pusher_invokes_submit_pubsub,
  ]
}

locals {
  push_subscriptions = {
    events      = google_pubsub_subscription.events_to_handle
    commands    = google_pubsub_subscription.commands_to_handle
    submissions = google_pubsub_subscription.submissions_to_submit
  }
}

# --- The Pub/Sub service agent's rights for dead-lettering -------------------

# Forward undeliverable messages to each dead-letter topic...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_subscription_names

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# ...and acknowledge them on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "source_subscriber" {
  for_each = local.push_subscription_names

  project      = var.project_id
  subscription = local.push_subscriptions[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
