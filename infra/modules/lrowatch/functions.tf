# Cloud Functions (2nd gen): submit (HTTP), submit_pubsub, poll, handle.
#
# submit_pubsub and handle are CloudEvent functions deployed WITHOUT an
# event_trigger: their push subscriptions are managed in pubsub.tf (dead
# letters, ordering, ack deadline). functions-framework turns a Pub/Sub push
# request into the CloudEvent the function expects.
#
# Access: every function has its own service account (iam.tf) and is
# invokable only by the principals granted roles/run.invoker on its service;
# there is no public invoker. poll, submit_pubsub and handle accept internal
# traffic only (Cloud Scheduler and Pub/Sub of the same project count as
# internal on the run.app URL); submit defaults to ALLOW_ALL for callers
# outside Google Cloud, still IAM-only. poll fans out through Pub/Sub (the
# poll_shards topic, pushed back to poll), never by calling its own URL: a
# function's outbound call to run.app is not internal traffic.

locals {
  # The confused-deputy guard: by default submissions may name only this project.
  allowed_parents = coalescelist(var.allowed_parents == null ? [] : var.allowed_parents,
  ["projects/${var.project_id}", "projects/${data.google_project.this.number}"])

  # Read by every function (functions/config.py COMMON_ENV).
  common_env = {
    GOOGLE_CLOUD_PROJECT    = var.project_id
    LRO_COLLECTION          = var.collection
    LRO_EVENTS_TOPIC        = google_pubsub_topic.contract["events"].name
    LRO_COMMANDS_TOPIC      = google_pubsub_topic.contract["commands"].name
    LRO_SUBMISSIONS_TOPIC   = google_pubsub_topic.contract["submissions"].name
    LRO_NOTIFY_URL_PREFIXES = join(",", var.notify_url_prefixes)
    LRO_DEFAULT_POLICY      = jsonencode({ for k, v in var.default_policy : k => v if v != null })
    LRO_RETENTION_DAYS      = tostring(var.retention_days)
    LRO_LOG_LEVEL           = upper(var.log_level)
    LRO_ALLOWED_PARENTS     = join(",", local.allowed_parents)
    LRO_HANDLER_TIMEOUT_S   = tostring(var.handler_timeout_s)
  }

  # Read by poll only (functions/config.py POLL_ENV).
  poll_env = {
    LRO_POLL_BUDGET_S        = tostring(var.poll_budget_s)
    LRO_POLL_CONCURRENCY     = tostring(var.poll_concurrency)
    LRO_POLL_BATCH           = tostring(var.poll_batch)
    LRO_LEASE_S              = tostring(var.lease_s)
    LRO_SHARDS               = tostring(var.shards)
    LRO_POLL_SHARDS_TOPIC    = google_pubsub_topic.contract["poll_shards"].name
    LRO_MAX_PERMANENT_ERRORS = tostring(var.max_permanent_errors)
    LRO_NOT_FOUND_GRACE_S    = tostring(var.not_found_grace_s)
    LRO_WATCH_SCOPES         = jsonencode(var.watch_scopes)
    LRO_RATE_LIMITS          = join(",", [for k, v in var.rate_limits : "${k}=${v}"])
  }

  # Environment of each function, keyed by entry point.
  function_env = {
    submit        = local.common_env
    submit_pubsub = local.common_env
    poll          = merge(local.common_env, local.poll_env)
    handle        = local.common_env
  }

  # Seconds a poll run needs beyond its budget to finish the work in flight,
  # write its results and answer.
  poll_headroom_s = 10

  runtime = "python311"

  # The three functions reached only from inside Google Cloud (Pub/Sub push,
  # Cloud Scheduler), keyed by entry point; each runs as
  # google_service_account.this[key] (iam.tf). submit has its own resource
  # below: its ingress is an input, and its checkov skip must not cover these.
  internal_functions = {
    # CloudEvent, pushed from the submissions subscription.
    submit_pubsub = {
      service     = "submit-pubsub"
      description = "lrowatch: submissions from the submissions topic (push subscription in pubsub.tf)."
      timeout_s   = var.handler_timeout_s
    }
    # HTTP, called by Cloud Scheduler, and pushed shard runs (pubsub.tf).
    poll = {
      service     = "poll"
      description = "lrowatch: one poll run (claim due operations, GET them, record changes, publish events)."
      timeout_s   = var.poll_timeout_s
    }
    # CloudEvent, pushed from the events and commands subscriptions.
    handle = {
      service     = "handle"
      description = "lrowatch: completion notifications and cancellation requests (push subscriptions in pubsub.tf)."
      timeout_s   = var.handler_timeout_s
    }
  }

  # All four deployed functions, keyed by entry point (outputs.tf).
  functions = merge(
    { submit = google_cloudfunctions2_function.submit },
    google_cloudfunctions2_function.internal,
  )
}

# --- Source: the repository root, zipped and uploaded ------------------------

data "archive_file" "source" {
  type        = "zip"
  source_dir  = coalesce(var.source_dir, "${path.module}/../../..")
  output_path = "${path.root}/.build/lrowatch-source.zip"

  # Only what the functions run: main.py, requirements.txt and functions/
  # without the tooling (CLI, local stack, simulator, DLQ tool), which stays
  # in the repository and the `lrowatch` distribution. pyproject.toml stays
  # out too, so the buildpack installs requirements.txt and nothing else.
  excludes = [
    ".git",
    ".git/**",
    ".github/**",
    ".ci/**",
    ".venv/**",
    ".venv-checkov/**",
    ".pytest_cache/**",
    ".hypothesis/**",
    ".run/**",
    "**/__pycache__/**",
    "**/*.pyc",
    "bench/**",
    "tools/**",
    ".cache/**",
    "*.egg-info/**",
    "build/**",
    "docs/**",
    "infra/**",
    "tests/**",
    "functions/cli/**",
    "functions/local/**",
    "functions/simulator/**",
    "functions/dlq.py",
    "functions/__main__.py",
    ".gitignore",
    "cloudbuild.yaml",
    "Makefile",
    "README.md",
    "pyproject.toml",
    "requirements-dev.txt",
  ]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:The bucket holds only deployment zips of public-repository code; Cloud Audit Logs record access, a second log bucket adds nothing.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-source"
  labels                      = var.labels
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.source_bucket_force_destroy

  versioning {
    enabled = true
  }

  # Old deployment zips are not needed once replaced.
  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes every code change a new deployment.
  name   = "lrowatch-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# --- submit: HTTP (submit, read, cancel) -------------------------------------

resource "google_cloudfunctions2_function" "submit" {
  #checkov:skip=CKV_GCP_124:submit is the public API for callers outside Google Cloud; ALLOW_ALL is still IAM-only (run.invoker for var.submit_invokers, no public member); set var.submit_ingress to restrict it.
  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-submit"
  labels      = var.labels
  description = "lrowatch: start tracking an operation, read tracked operations, request a cancellation."

  build_config {
    runtime         = local.runtime
    entry_point     = "submit"
    service_account = google_service_account.this["build"].id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory               = var.function_memory["submit"]
    timeout_seconds                = var.submit_timeout_s
    max_instance_count             = var.function_max_instances["submit"]
    min_instance_count             = 0
    ingress_settings               = var.submit_ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.this["submit"].email
    environment_variables          = local.function_env["submit"]
  }

  depends_on = [google_project_iam_member.build]
}

# --- submit_pubsub, poll, handle: internal ingress only -----------------------

resource "google_cloudfunctions2_function" "internal" {
  for_each = local.internal_functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-${each.value.service}"
  labels      = var.labels
  description = each.value.description

  build_config {
    runtime         = local.runtime
    entry_point     = each.key
    service_account = google_service_account.this["build"].id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory               = var.function_memory[each.key]
    timeout_seconds                = each.value.timeout_s
    max_instance_count             = var.function_max_instances[each.key]
    min_instance_count             = 0
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.this[each.key].email
    environment_variables          = local.function_env[each.key]
  }

  # poll's timing (checked on poll only).
  lifecycle {
    precondition {
      condition     = each.key != "poll" || var.poll_budget_s + local.poll_headroom_s <= var.poll_timeout_s
      error_message = "poll_budget_s plus ${local.poll_headroom_s} s of headroom must fit within poll_timeout_s."
    }
    precondition {
      condition     = each.key != "poll" || var.lease_s >= var.poll_budget_s
      error_message = "lease_s must be at least poll_budget_s, or a claim could lapse while its run still works on it."
    }
  }

  depends_on = [google_project_iam_member.build]
}
