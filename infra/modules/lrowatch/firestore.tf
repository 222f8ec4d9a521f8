# Firestore (native mode): the (default) database, the poller's composite
# indexes, the index exemption for next_poll_at, and TTL policies.
#
# The code does not name a database (config.py has no database variable), so
# lrowatch always uses "(default)". Field names used here are part of the
# record schema and must match the code:
#   ${collection}          state, shard, next_poll_at, expire_at (TTL)
#   ${collection}_claims   expires_at (TTL)
#   ${collection}_leases   expires_at (TTL)
#   ${collection}_outbox   no index or TTL configuration needed here

locals {
  firestore_database = "(default)"
  claims_collection  = "${var.collection}_claims"
  outbox_collection  = "${var.collection}_outbox"
  leases_collection  = "${var.collection}_leases"
}

resource "google_firestore_database" "default" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = local.firestore_database
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # `terraform destroy` leaves the database (and its data) in place.
  deletion_policy = "ABANDON"
}

# The poller's due-operation queries, one composite index each (fields in
# order, all ascending):
#   unsharded: state == / in (...) AND next_poll_at <= now ORDER BY next_poll_at
#   by_shard:  shard == S AND state == / in (...) AND next_poll_at <= now
#              ORDER BY next_poll_at. The shard field placed before the
#              timestamp is Firestore's documented remedy for
#              sequential-index hotspots.
locals {
  due_indexes = {
    unsharded = ["state", "next_poll_at"]
    by_shard  = ["shard", "state", "next_poll_at"]
  }
}

resource "google_firestore_index" "due" {
  for_each = local.due_indexes

  project     = var.project_id
  database    = local.firestore_database
  collection  = var.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }

  depends_on = [google_firestore_database.default]
}

# Decision: exempt next_poll_at from automatic single-field indexing.
# Every poll rewrites next_poll_at with a near-"now" timestamp; the automatic
# single-field index on it is one sequential index over the whole collection,
# the hotspot that caps writes at ~500/s. Composite indexes are built and kept
# independently of single-field indexes, so the two indexes above still serve
# every due-operation query. Consequence for the code: never query or order on
# next_poll_at alone — always with an equality/IN on state (and shard).
resource "google_firestore_field" "next_poll_at" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "next_poll_at"

  # An empty index_config removes the automatic ascending, descending and
  # array-contains indexes for this field.
  index_config {}

  depends_on = [google_firestore_database.default]
}

# Finished operations are deleted after var.retention_days: the code sets
# expire_at = finished_at + retention_days on a terminal record (unset while
# the operation is live). Not queried, so its index is exempted as well, as
# recommended for TTL fields written at high rates.
resource "google_firestore_field" "operations_ttl" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "expire_at"

  ttl_config {}
  index_config {}

  # Field configuration changes are applied one at a time per database, so
  # the field resources stay separate, chained by depends_on.
  depends_on = [google_firestore_field.next_poll_at]
}

# Idempotency claims (submission de-duplication) expire on their own.
resource "google_firestore_field" "claims_ttl" {
  project    = var.project_id
  database   = local.firestore_database
  collection = local.claims_collection
  field      = "expires_at"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_field.operations_ttl]
}

# Poll runs' leases (Scheduler ticks, shard ownership, watch-scope listings):
# an expired one is only ever taken over, so TTL may delete it.
resource "google_firestore_field" "leases_ttl" {
  project    = var.project_id
  database   = local.firestore_database
  collection = local.leases_collection
  field      = "expires_at"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_field.claims_ttl]
}

# The completion estimate (functions/domain/eta.py) is rewritten on every poll
# with near-future timestamps: like next_poll_at, an automatic index on it
# would be a sequential hotspot. Never queried, so exempted. The failed items
# and progress samples are JSON text read only with their record.
resource "google_firestore_field" "eta" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "eta"

  index_config {}

  depends_on = [google_firestore_field.leases_ttl]
}

resource "google_firestore_field" "eta_low" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "eta_low"

  index_config {}

  depends_on = [google_firestore_field.eta]
}

resource "google_firestore_field" "eta_high" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "eta_high"

  index_config {}

  depends_on = [google_firestore_field.eta_low]
}

resource "google_firestore_field" "progress_samples" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "progress_samples"

  index_config {}

  depends_on = [google_firestore_field.eta_high]
}

resource "google_firestore_field" "failed_items" {
  project    = var.project_id
  database   = local.firestore_database
  collection = var.collection
  field      = "failed_items"

  index_config {}

  depends_on = [google_firestore_field.progress_samples]
}
