# Pub/Sub: the contract's three topics, poll's own shard-run topic, and
# explicitly managed push subscriptions (a function's event_trigger cannot
# express a dead-letter policy or message ordering). Each push subscription:
#   - pushes to the function's run.app URL (internal ingress accepts Pub/Sub
#     from the same project only on that URL) with an OIDC token minted for
#     the dedicated pusher service account;
#   - has an ack deadline that outlasts its function's work (the handler
#     timeout; for shard runs, poll's timeout within Pub/Sub's 600 s cap);
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

  # The contract's topics, and poll_shards: key => topic id. poll_shards is
  # lrowatch's own: a poll run with more due work than it can handle publishes
  # one message per shard there, and Pub/Sub pushes each back to poll as a
  # shard run (Pub/Sub carries the OIDC identity; no code calls poll's URL).
  topics = {
    events      = var.events_topic
    commands    = var.commands_topic
    submissions = var.submissions_topic
    poll_shards = var.poll_shards_topic
  }

  # One entry per push subscription: its name (its dead-letter topic and hold
  # subscription are named after it), the topic it reads (key of
  # local.topics), the internal function it pushes to (key of
  # local.internal_functions), whether delivery is ordered, and the ack
  # deadline (seconds the function may work before Pub/Sub redelivers).
  push_subscriptions = {
    # State-change events -> handle, in order per operation (ordering key = id).
    events = {
      name         = "${var.name_prefix}-events-to-handle"
      topic        = "events"
      function     = "handle"
      ordered      = true
      ack_deadline = var.handler_timeout_s
    }
    # Commands (cancellation requests) -> handle.
    commands = {
      name         = "${var.name_prefix}-commands-to-handle"
      topic        = "commands"
      function     = "handle"
      ordered      = false
      ack_deadline = var.handler_timeout_s
    }
    # Submissions from other systems -> submit_pubsub.
    submissions = {
      name         = "${var.name_prefix}-submissions-to-submit"
      topic        = "submissions"
      function     = "submit_pubsub"
      ordered      = false
      ack_deadline = var.handler_timeout_s
    }
    # Shard-run requests -> poll. A shard run answers when its budget is
    # spent, so the deadline is poll's timeout within Pub/Sub's 600 s cap
    # (var.poll_budget_s is at most 600). A duplicate delivery is harmless:
    # the shard's lease makes it return "skipped".
    poll_shards = {
      name         = "${var.name_prefix}-poll-shards-to-poll"
      topic        = "poll_shards"
      function     = "poll"
      ordered      = false
      ack_deadline = min(var.poll_timeout_s, 600)
    }
  }
}

# --- The contract's topics ---------------------------------------------------

resource "google_pubsub_topic" "contract" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  for_each = local.topics

  project = var.project_id
  name    = each.value
  labels  = var.labels
}

# --- Dead-letter topics, one per push subscription ---------------------------

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are encrypted at rest with Google-managed keys; a CMEK key ring is outside lrowatch's scope.
  for_each = local.push_subscriptions

  project = var.project_id
  name    = "${each.value.name}-dlq"
  labels  = var.labels
}

# Pull subscriptions that keep dead letters until someone replays or drops
# them (they are never pushed anywhere and never expire).
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = local.push_subscriptions

  project                    = var.project_id
  name                       = "${each.value.name}-dlq-hold"
  labels                     = var.labels
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# --- Push subscriptions ------------------------------------------------------

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  project                    = var.project_id
  name                       = each.value.name
  labels                     = var.labels
  topic                      = google_pubsub_topic.contract[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline
  message_retention_duration = var.message_retention
  enable_message_ordering    = each.value.ordered

  push_config {
    push_endpoint = google_cloudfunctions2_function.internal[each.value.function].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.this["pusher"].email
      audience              = google_cloudfunctions2_function.internal[each.value.function].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.service_invokers,
  ]
}

# --- The Pub/Sub service agent's rights for dead-lettering -------------------

# Forward undeliverable messages to each dead-letter topic...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_subscriptions

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# ...and acknowledge them on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "source_subscriber" {
  for_each = local.push_subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
