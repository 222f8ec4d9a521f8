# Identities and least-privilege grants.
#
# One runtime service account per function, plus: the pusher (OIDC identity
# of the push subscriptions), the scheduler (OIDC identity of the poll job)
# and the build account (Cloud Build for the functions' images).
#
#   account        Firestore        publishes to                run.invoker on
#   submit         datastore.user   commands                    -
#   submit_pubsub  datastore.user   commands                    -
#   poll           datastore.user   events, commands,           -
#                                   poll_shards
#   handle         datastore.user   events, var.notify_topics   -
#   pusher         -                -                           handle, submit_pubsub, poll
#   scheduler      -                -                           poll
#
# poll is invoked twice over: by the scheduler (each tick) and by the pusher
# (shard runs that poll itself requested on the poll_shards topic).
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

locals {
  # Every identity lrowatch runs as: account id suffix and display name. The
  # four function keys are the functions' entry points (functions.tf).
  service_accounts = {
    submit        = { id = "submit", display_name = "lrowatch submit function" }
    submit_pubsub = { id = "submit-ps", display_name = "lrowatch submit_pubsub function" }
    poll          = { id = "poll", display_name = "lrowatch poll function" }
    handle        = { id = "handle", display_name = "lrowatch handle function" }
    pusher        = { id = "pusher", display_name = "lrowatch Pub/Sub push identity (OIDC)" }
    scheduler     = { id = "scheduler", display_name = "lrowatch Cloud Scheduler identity (OIDC)" }
    build         = { id = "build", display_name = "lrowatch function builds (Cloud Build)" }
  }
}

resource "google_service_account" "this" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.value.id}"
  display_name = each.value.display_name
}

locals {
  # The four functions' own accounts (not the pusher, scheduler or build).
  function_service_accounts = {
    submit        = google_service_account.this["submit"]
    submit_pubsub = google_service_account.this["submit_pubsub"]
    poll          = google_service_account.this["poll"]
    handle        = google_service_account.this["handle"]
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
    { for r in var.poll_operation_roles : "poll/${r}" => { role = r, member = "serviceAccount:${google_service_account.this["poll"].email}" } },
    { for r in var.handle_operation_roles : "handle/${r}" => { role = r, member = "serviceAccount:${google_service_account.this["handle"].email}" } },
  )

  # Publisher grants on the contract's topics: "account/topic" => both keys.
  topic_publishers = {
    "submit/commands"        = { account = "submit", topic = "commands" }
    "submit_pubsub/commands" = { account = "submit_pubsub", topic = "commands" }
    "poll/events"            = { account = "poll", topic = "events" }
    "poll/commands"          = { account = "poll", topic = "commands" }
    "poll/poll_shards"       = { account = "poll", topic = "poll_shards" }
    "handle/events"          = { account = "handle", topic = "events" }
  }

  # run.invoker between lrowatch's own identities: "function/account" => both
  # keys (a function may have several callers). submit's callers come from
  # var.submit_invokers instead.
  service_invokers = {
    "handle/pusher"        = { function = "handle", account = "pusher" }
    "submit_pubsub/pusher" = { function = "submit_pubsub", account = "pusher" }
    "poll/scheduler"       = { function = "poll", account = "scheduler" }
    "poll/pusher"          = { function = "poll", account = "pusher" }
  }
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
  member  = "serviceAccount:${google_service_account.this["build"].email}"
}

# --- Publisher on the specific topics ----------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_publishers

  project = var.project_id
  topic   = google_pubsub_topic.contract[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.this[each.value.account].email}"
}

# notify_topic targets the deployer knows of (full topic paths).
resource "google_pubsub_topic_iam_member" "handle_publishes_notify" {
  for_each = toset(var.notify_topics)

  project = split("/", each.value)[1]
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.this["handle"].email}"
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

resource "google_cloud_run_service_iam_member" "service_invokers" {
  for_each = local.service_invokers

  project  = var.project_id
  location = google_cloudfunctions2_function.internal[each.value.function].location
  service  = google_cloudfunctions2_function.internal[each.value.function].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.this[each.value.account].email}"
}

# --- Token minting for push OIDC ---------------------------------------------

# The Pub/Sub service agent mints the pusher's OIDC tokens. Projects created
# after April 2021 no longer need this grant; it is kept, on this one account
# only, for older projects.
resource "google_service_account_iam_member" "pubsub_agent_mints_pusher_tokens" {
  service_account_id = google_service_account.this["pusher"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
