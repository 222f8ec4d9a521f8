# Inputs. Names of topics and the collection default to the contract (§2);
# every tuning knob maps to one LRO_* variable read by functions/config.py,
# with the same bounds as config.py enforces.

# --- Project and placement -------------------------------------------------

variable "project_id" {
  description = "Project that holds Firestore, the topics and the functions (GOOGLE_CLOUD_PROJECT)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, the Scheduler job and the source bucket."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1."
  }
}

variable "source_dir" {
  description = "The lrowatch checkout the functions are built from (main.py, requirements.txt, functions/). Default: the checkout this module sits in."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every resource name lrowatch creates (functions, service accounts, subscriptions, bucket)."
  type        = string
  default     = "lro"

  validation {
    # Service account ids are 6-30 characters; the longest suffix is "-scheduler".
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix must start with a lowercase letter and hold at most 20 lowercase letters, digits or hyphens."
  }
}

# --- Firestore ---------------------------------------------------------------

variable "create_firestore_database" {
  description = "Create the (default) Firestore database in native mode. Set to false when the project already has one (it must be in native mode)."
  type        = bool
  default     = true
}

variable "firestore_location" {
  description = "Location of the (default) Firestore database when it is created here (a region such as us-central1 or a multi-region such as nam5). Null means var.region."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^[a-z0-9-]+$", coalesce(var.firestore_location, "x")))
    error_message = "firestore_location must be a Firestore location id such as us-central1, nam5 or eur3."
  }
}

variable "collection" {
  description = "Firestore collection of tracked operations (LRO_COLLECTION). The claims and outbox collections are named after it."
  type        = string
  default     = "lro_operations"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_]{0,99}$", var.collection))
    error_message = "collection must be a plain collection id (letters, digits, underscores)."
  }
}

variable "retention_days" {
  description = "Days a finished operation's record is kept before Firestore's TTL policy deletes it (LRO_RETENTION_DAYS)."
  type        = number
  default     = 35

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number between 1 and 3650."
  }
}

# --- Pub/Sub -----------------------------------------------------------------

variable "events_topic" {
  description = "Topic of state-change events (LRO_EVENTS_TOPIC)."
  type        = string
  default     = "lro-events"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.events_topic)) && !startswith(var.events_topic, "goog")
    error_message = "events_topic must be a Pub/Sub topic id."
  }
}

variable "commands_topic" {
  description = "Topic of commands such as cancellation requests (LRO_COMMANDS_TOPIC)."
  type        = string
  default     = "lro-commands"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.commands_topic)) && !startswith(var.commands_topic, "goog")
    error_message = "commands_topic must be a Pub/Sub topic id."
  }
}

variable "submissions_topic" {
  description = "Topic whose messages submit_pubsub turns into tracked operations (LRO_SUBMISSIONS_TOPIC)."
  type        = string
  default     = "lro-submissions"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.submissions_topic)) && !startswith(var.submissions_topic, "goog")
    error_message = "submissions_topic must be a Pub/Sub topic id."
  }
}

variable "poll_shards_topic" {
  description = "Topic on which a poll run requests shard runs when the backlog outgrows one run; pushed back to poll (LRO_POLL_SHARDS_TOPIC)."
  type        = string
  default     = "lro-poll-shards"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", var.poll_shards_topic)) && !startswith(var.poll_shards_topic, "goog")
    error_message = "poll_shards_topic must be a Pub/Sub topic id."
  }
}

variable "max_delivery_attempts" {
  description = "Delivery attempts of a push subscription before a message goes to its dead-letter topic."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "message_retention" {
  description = "How long subscriptions (and the dead-letter hold subscriptions) keep unacknowledged messages, in seconds with an s suffix."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention)) && try(tonumber(trimsuffix(var.message_retention, "s")) >= 600 && tonumber(trimsuffix(var.message_retention, "s")) <= 2678400, false)
    error_message = "message_retention must be between 600s and 2678400s (31 days)."
  }
}

variable "notify_topics" {
  description = "Full paths (projects/P/topics/T) of notify_topic targets in this deployment's reach; handle's service account is granted publisher on each. Topics owned elsewhere must grant roles/pubsub.publisher to the handle service account themselves."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.notify_topics : can(regex("^projects/[a-z][a-z0-9-]+/topics/[A-Za-z][A-Za-z0-9._~+%-]+$", t))])
    error_message = "notify_topics must be full topic paths: projects/PROJECT/topics/TOPIC."
  }
}

# --- Behaviour shared by all functions ---------------------------------------

variable "allowed_parents" {
  description = "Where submissions may point lrowatch (LRO_ALLOWED_PARENTS): projects/ID, projects/NUMBER, organizations/ID or folders/ID that operation names, quota_project and notify_topic must fall inside, else 403. Null (the default) means this deployment's project, by id and number."
  type        = list(string)
  default     = null

  validation {
    condition     = var.allowed_parents == null ? true : alltrue([for p in var.allowed_parents : can(regex("^(projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+)|organizations/[0-9]+|folders/[0-9]+)$", p))])
    error_message = "Each allowed_parents entry must be projects/ID, projects/NUMBER, organizations/ID or folders/ID."
  }
}

variable "notify_url_prefixes" {
  description = "Allowlist of https://host/ prefixes a submission's notify_url must start with (LRO_NOTIFY_URL_PREFIXES). Empty means notify_url is refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.notify_url_prefixes : can(regex("^https://[^/,\\s]+/[^,\\s]*$", p))])
    error_message = "Each notify_url_prefixes entry must be an https://host/ prefix (https only, with a path, no commas)."
  }
}

variable "default_policy" {
  description = "Polling policy applied when a submission gives none (LRO_DEFAULT_POLICY, sent as JSON). Unset fields keep the code's defaults. Bounds as functions/domain/policy.py enforces them."
  type = object({
    initial_delay_s    = optional(number)
    multiplier         = optional(number)
    max_delay_s        = optional(number)
    deadline_s         = optional(number)
    jitter             = optional(number)
    cancel_on_deadline = optional(bool)
  })
  default = {}

  validation {
    condition = alltrue([
      for field, bounds in {
        initial_delay_s = [0, 86400]
        multiplier      = [1, 10]
        max_delay_s     = [1, 86400]
        deadline_s      = [1, 2592000]
        jitter          = [0, 0.5]
      } : try(var.default_policy[field] == null, true) || try(var.default_policy[field] >= bounds[0] && var.default_policy[field] <= bounds[1], false)
    ])
    error_message = "default_policy: initial_delay_s 0-86400, multiplier 1-10, max_delay_s 1-86400, deadline_s 1-2592000 (30 days), jitter 0-0.5."
  }
}

variable "log_level" {
  description = "Log level of every function (LRO_LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], upper(var.log_level))
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

# --- Poller ------------------------------------------------------------------

variable "schedule" {
  description = "Cloud Scheduler cron schedule of poll runs (one minute is Scheduler's smallest interval)."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.schedule))) == 5
    error_message = "schedule must be a five-field cron expression."
  }
}

variable "time_zone" {
  description = "Time zone of the schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "poll_budget_s" {
  description = "Working time of one poll run, in seconds (LRO_POLL_BUDGET_S, and the Scheduler body's budget_s). Must leave headroom below poll_timeout_s."
  type        = number
  default     = 50

  validation {
    # Shard runs are Pub/Sub pushes to poll, whose ack deadline is at most 600 s.
    condition     = var.poll_budget_s >= 1 && var.poll_budget_s <= 600
    error_message = "poll_budget_s must be between 1 and 600 seconds (a shard run must end within Pub/Sub's longest ack deadline) and below poll_timeout_s."
  }
}

variable "poll_timeout_s" {
  description = "Timeout of the poll function, in seconds; also the Scheduler attempt deadline (at most 1800 s)."
  type        = number
  default     = 120

  validation {
    condition     = var.poll_timeout_s >= 30 && var.poll_timeout_s <= 1800
    error_message = "poll_timeout_s must be between 30 and 1800 seconds (Cloud Scheduler's longest HTTP attempt deadline)."
  }
}

variable "poll_concurrency" {
  description = "Operations GET concurrently by one poll run (LRO_POLL_CONCURRENCY)."
  type        = number
  default     = 32

  validation {
    condition     = var.poll_concurrency >= 1 && var.poll_concurrency <= 512
    error_message = "poll_concurrency must be between 1 and 512."
  }
}

variable "poll_batch" {
  description = "Due operations read per Firestore query by the poller (LRO_POLL_BATCH)."
  type        = number
  default     = 500

  validation {
    condition     = var.poll_batch >= 1 && var.poll_batch <= 500
    error_message = "poll_batch must be between 1 and 500."
  }
}

variable "lease_s" {
  description = "Seconds a claimed operation stays leased to one poll run (LRO_LEASE_S)."
  type        = number
  default     = 60

  validation {
    condition     = var.lease_s >= 5 && var.lease_s <= 3600
    error_message = "lease_s must be between 5 and 3600 seconds."
  }
}

variable "shards" {
  description = "Number of values of the records' shard field (LRO_SHARDS); spreads next_poll_at index writes past ~500/s."
  type        = number
  default     = 16

  validation {
    condition     = var.shards >= 1 && var.shards <= 256 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number between 1 and 256."
  }
}

variable "max_permanent_errors" {
  description = "Consecutive permanent GET errors before an operation is marked FAILED (LRO_MAX_PERMANENT_ERRORS)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_permanent_errors >= 1 && var.max_permanent_errors <= 100
    error_message = "max_permanent_errors must be between 1 and 100."
  }
}

variable "not_found_grace_s" {
  description = "Seconds after submission during which a 404 is treated as not-yet-visible rather than EXPIRED (LRO_NOT_FOUND_GRACE_S)."
  type        = number
  default     = 300

  validation {
    condition     = var.not_found_grace_s >= 0 && var.not_found_grace_s <= 86400
    error_message = "not_found_grace_s must be between 0 and 86400 seconds."
  }
}

variable "watch_scopes" {
  description = "Operation collections the poller lists to discover operations nobody submitted (LRO_WATCH_SCOPES, sent as a JSON list of {service, parent, filter})."
  type = list(object({
    service = string
    parent  = string
    filter  = optional(string, "")
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.watch_scopes : length(trimspace(s.service)) > 0 && can(regex("^projects/[^/]+(/locations/[^/]+)?$", s.parent))])
    error_message = "Each watch_scopes entry needs a service and a parent of the form projects/P or projects/P/locations/L."
  }
}

variable "rate_limits" {
  description = "GET rate limits of the poller per service (or SERVICE@QUOTA_PROJECT), e.g. { documentai = \"1800/min\" } (LRO_RATE_LIMITS). Services left out keep their published defaults (functions/domain/ratelimit.py)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.rate_limits : can(regex("^[a-z][a-z0-9.-]*(@[a-z0-9-]+)?$", k)) && can(regex("^[0-9.]+/(s|min|h)$", v))])
    error_message = "Each rate_limits entry is SERVICE[@QUOTA_PROJECT] = \"N/s\", \"N/min\" or \"N/h\"."
  }
}

# --- Functions: sizes, timeouts, access --------------------------------------

variable "function_memory" {
  description = "Memory of each function (Cloud Run units, e.g. 256Mi, 1Gi)."
  type        = map(string)
  default = {
    submit        = "256Mi"
    submit_pubsub = "256Mi"
    poll          = "512Mi"
    handle        = "256Mi"
  }

  validation {
    condition     = alltrue([for k in ["submit", "submit_pubsub", "poll", "handle"] : can(regex("^[0-9]+(Mi|Gi)$", lookup(var.function_memory, k, "")))])
    error_message = "function_memory needs submit, submit_pubsub, poll and handle, each like 256Mi or 1Gi."
  }
}

variable "function_max_instances" {
  description = "Maximum instances of each function."
  type        = map(number)
  default = {
    submit        = 20
    submit_pubsub = 20
    poll          = 3
    handle        = 20
  }

  validation {
    condition     = alltrue([for k in ["submit", "submit_pubsub", "poll", "handle"] : try(lookup(var.function_max_instances, k) >= 1 && lookup(var.function_max_instances, k) <= 1000, false)])
    error_message = "function_max_instances needs submit, submit_pubsub, poll and handle, each between 1 and 1000."
  }
}

variable "submit_timeout_s" {
  description = "Timeout of the submit HTTP function, in seconds."
  type        = number
  default     = 60

  validation {
    condition     = var.submit_timeout_s >= 10 && var.submit_timeout_s <= 3600
    error_message = "submit_timeout_s must be between 10 and 3600 seconds."
  }
}

variable "handler_timeout_s" {
  description = "Timeout of the Pub/Sub-pushed functions (handle, submit_pubsub), in seconds; also their subscriptions' ack deadline, so at most 600."
  type        = number
  default     = 120

  validation {
    condition     = var.handler_timeout_s >= 10 && var.handler_timeout_s <= 600
    error_message = "handler_timeout_s must be between 10 and 600 seconds (Pub/Sub's longest ack deadline)."
  }
}

variable "submit_ingress" {
  description = "Ingress of the submit function. ALLOW_ALL is still IAM-only (no public invoker); the other three functions are always internal-only."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.submit_ingress)
    error_message = "submit_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "submit_invokers" {
  description = "IAM members allowed to call submit (e.g. user:me@example.com, group:ops@example.com, serviceAccount:ci@p.iam.gserviceaccount.com). Public members are refused."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.submit_invokers :
      can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+$", m))
    ])
    error_message = "submit_invokers entries must be IAM members such as user:..., group:..., serviceAccount:...; public members are not allowed."
  }
}

variable "poll_operation_roles" {
  description = "Project roles the poll service account needs to GET the tracked operations (e.g. roles/documentai.viewer). Owner/editor are refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.poll_operation_roles : startswith(r, "roles/") && !contains(["roles/owner", "roles/editor"], r)])
    error_message = "poll_operation_roles must be predefined roles (roles/...), never roles/owner or roles/editor."
  }
}

variable "handle_operation_roles" {
  description = "Project roles the handle service account needs to cancel the tracked operations (e.g. roles/documentai.editor). Owner/editor are refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.handle_operation_roles : startswith(r, "roles/") && !contains(["roles/owner", "roles/editor"], r)])
    error_message = "handle_operation_roles must be predefined roles (roles/...), never roles/owner or roles/editor."
  }
}

variable "source_bucket_force_destroy" {
  description = "Let terraform destroy delete the source bucket with its objects."
  type        = bool
  default     = true
}

# --- Labels and monitoring -----------------------------------------------------

variable "labels" {
  description = "Labels put on every resource that takes them (topics, subscriptions, functions, the source bucket; alert policies as user labels)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels: keys start with a lowercase letter; keys and values hold at most 63 lowercase letters, digits, '_' or '-'."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) that every lrowatch alert notifies. Empty: the alerts open incidents only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels: each must be projects/PROJECT/notificationChannels/ID."
  }
}

variable "alert_lag_p95_s" {
  description = "Alert when poll runs' lag p95 (how late polls are against their due time) stays above this many seconds for 10 minutes."
  type        = number
  default     = 120

  validation {
    condition     = var.alert_lag_p95_s > 0
    error_message = "alert_lag_p95_s must be positive."
  }
}

variable "alert_poll_error_share" {
  description = "Alert when more than this share (0-1) of poll runs in 15 minutes had transient API errors."
  type        = number
  default     = 0.5

  validation {
    condition     = var.alert_poll_error_share > 0 && var.alert_poll_error_share <= 1
    error_message = "alert_poll_error_share must be in (0, 1]."
  }
}

variable "alert_oldest_unacked_s" {
  description = "Alert when a push subscription's oldest unacknowledged message is older than this many seconds for 5 minutes."
  type        = number
  default     = 900

  validation {
    condition     = var.alert_oldest_unacked_s >= 60
    error_message = "alert_oldest_unacked_s must be at least 60."
  }
}

variable "alert_5xx_share" {
  description = "Alert when more than this share (0-1) of a function's requests answer 5xx over 5 minutes (push handlers answer 5xx to ask for redelivery, so a small share is normal)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.alert_5xx_share > 0 && var.alert_5xx_share <= 1
    error_message = "alert_5xx_share must be in (0, 1]."
  }
}
