# Identities and least-privilege grants.
#
# One runtime service account per function, plus: the pusher (OIDC identity
# of the push subscriptions), the scheduler (OIDC identity of the poll job)
# and the build account (Cloud Build for the functions' images).
#
#   account        Firestore        publishes to                run.invoker on
#   submit         datastore.user   commands                    -
#   submit_pubsub  datastore.user   commands                    -
#   poll           datastore.user   events, commands            -
#   handle         datastore.user   events, var.notify_topics   -
#   pusher         -                -                           handle, submit_pubsub
#   scheduler      -                -                           poll
#   var.submit_invokers                                         submit
#
# notify_topic targets: a submission may name any topic as notify_topic. Topics
# listed in var.notify_topics get publisher for the handle account here; any
# other topic's owner must grant roles/pubsub.publisher to the handle service
# account (output handle_service_account) on that topic, or the notification
# is refused by Pub/Sub.
#
# Operations' own APIs: poll GETs and handle cancels operations of other
# services (Document AI, Vision, ...). Grant what they need through
# var.poll_operation_roles / var.handle_operation_roles, or on the owning
# project, to the poll / handle service accounts.
#
# No grant anywhere uses a public member.

# --- Service accounts --------------------------------------------------------

resource "google_service_account" "submit" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-submit"
  display_name = "lrowatch submit function"
}

resource "google_service_account" "submit_pubsub" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-submit-ps"
  display_name = "lrowatch submit_pubsub function"
}

resource "google_service_account" "poll" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-poll"
  display_name = "lrowatch poll function"
}

resource "google_service_account" "handle" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-handle"
  display_name = "lrowatch handle function"
}

resource "google_service_account" "pusher" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pusher"
  display_name = "lrowatch Pub/Sub push identity (OIDC)"
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "lrowatch Cloud Scheduler identity (OIDC)"
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "lrowatch function builds (Cloud Build)"
}

locals {
  function_service_accounts = {
    submit        = google_service_account.submit
    submit_pubsub = google_service_account.submit_pubsub
    poll          = google_service_account.poll
    handle        = google_service_account.handle
  }

  # Roles Google documents for a user-specified Cloud Functions build account:
  # build logs, the image in Artifact Registry, the staged source in Cloud
  # Storage (the gcf-v2-* buckets are created by the service, hence project level).
  build_roles = [
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectAdmin",
  ]

  operation_grants = merge(
    { for r in var.poll_operation_roles : "poll/${r}" => { role = r, member = "serviceAccount:${google_service_account.poll.email}" } },
    { for r in var.handle_operation_roles : "handle/${r}" => { role = r, member = "serviceAccount:${google_service_account.handle.email}" } },
  )
}

# --- Firestore: the four functions only --------------------------------------

resource "google_project_iam_member" "datastore_user" {
  for_each = local.function_service_accounts

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${each.value.email}"
}

resource "google_project_iam_member" "operation_access" {
  for_each = local.operation_grants

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.build_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# --- Publisher on the specific topics ----------------------------------------

resource "google_pubsub_topic_iam_member" "submit_publishes_commands" {
  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.submit.email}"
}

resource "google_pubsub_topic_iam_member" "submit_pubsub_publishes_commands" {
  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.submit_pubsub.email}"
}

resource "google_pubsub_topic_iam_member" "poll_publishes_events" {
  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.poll.email}"
}

resource "google_pubsub_topic_iam_member" "poll_publishes_commands" {
  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.poll.email}"
}

resource "google_pubsub_topic_iam_member" "handle_publishes_events" {
  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.handle.email}"
}

# notify_topic targets the deployer knows of (full topic paths).
resource "google_pubsub_topic_iam_member" "handle_publishes_notify" {
  for_each = toset(var.notify_topics)

  project = split("/", each.value)[1]
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.handle.email}"
}

# --- Invokers, per Cloud Run service (the function's name) -------------------

resource "google_cloud_run_service_iam_member" "submit_invokers" {
  for_each = toset(var.submit_invokers)

  project  = var.project_id
  location = google_cloudfunctions2_function.submit.location
  service  = google_cloudfunctions2_function.submit.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "pusher_invokes_handle" {
  project  = var.project_id
  location = google_cloudfunctions2_function.handle.location
  service  = google_cloudfunctions2_function.handle.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher.email}"
}

resource "google_cloud_run_service_iam_member" "pusher_invokes_submit_pubsub" {
  project  = var.project_id
  location = google_cloudfunctions2_function.submit_pubsub.location
  service  = google_cloudfunctions2_function.submit_pubsub.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher.email}"
}

resource "google_cloud_run_service_iam_member" "scheduler_invokes_poll" {
  project  = var.project_id
  location = google_cloudfunctions2_function.poll.location
  service  = google_cloudfunctions2_function.poll.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- Token minting for push OIDC ---------------------------------------------

# The Pub/Sub service agent mints the pusher's OIDC tokens. Projects created
# after April 2021 no longer need this grant; it is kept, on this one account
# only, for older projects.
resource "google_service_account_iam_member" "pubsub_agent_mints_pusher_tokens" {
  service_account_id = google_service_account.pusher.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
