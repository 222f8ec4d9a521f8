# The root example: one lrowatch deployment from the reusable module
# infra/modules/lrowatch (its variables.tf lists every input, with its
# validation). cloudbuild.yaml applies this directory; put your settings in
# terraform.tfvars (docs/deploy.md). State: backend.tf.

# --- Terraform and providers (the module pins the same range: modules/lrowatch/versions.tf)
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.40, < 7"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# --- The deployment: inputs not passed here keep the module's defaults; add a
# line below (and a variable further down) to set one.
module "lrowatch" {
  source = "./modules/lrowatch"

  project_id                = var.project_id
  region                    = var.region
  create_firestore_database = var.create_firestore_database
  submit_invokers           = var.submit_invokers
  notify_url_prefixes       = var.notify_url_prefixes
  notify_topics             = var.notify_topics
  allowed_parents           = var.allowed_parents
  poll_operation_roles      = var.poll_operation_roles
  handle_operation_roles    = var.handle_operation_roles
  notification_channels     = var.notification_channels
  labels                    = var.labels
}

# --- Inputs: the settings docs/deploy.md asks for. The module validates each
# (modules/lrowatch/variables.tf); the defaults here are the module's.

variable "project_id" {
  description = "Project that holds Firestore, the topics and the functions (GOOGLE_CLOUD_PROJECT)."
  type        = string
}

variable "region" {
  description = "Region of the functions, the Scheduler job and the source bucket."
  type        = string
  default     = "us-central1"
}

variable "create_firestore_database" {
  description = "Create the (default) Firestore database; false when the project already has one."
  type        = bool
  default     = true
}

variable "submit_invokers" {
  description = "Principals allowed to call submit (users, groups, service accounts; never allUsers)."
  type        = list(string)
  default     = []
}

variable "notify_url_prefixes" {
  description = "https://host/ prefixes a notify_url must start with."
  type        = list(string)
  default     = []
}

variable "notify_topics" {
  description = "notify_topic targets handle's account may publish to (projects/P/topics/T)."
  type        = list(string)
  default     = []
}

variable "allowed_parents" {
  description = "LRO_ALLOWED_PARENTS; null: this deployment's project, by id and number."
  type        = list(string)
  default     = null
}

variable "poll_operation_roles" {
  description = "Project roles that let poll read the operations it tracks."
  type        = list(string)
  default     = []
}

variable "handle_operation_roles" {
  description = "Project roles that let handle cancel the operations it tracks."
  type        = list(string)
  default     = []
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels every lrowatch alert notifies."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}

# --- Outputs: what the module tells after `terraform apply` (modules/lrowatch/outputs.tf).

output "submit_url" {
  description = "HTTPS endpoint of submit (IAM-authenticated: send an ID token with audience = this URL)."
  value       = module.lrowatch.submit_url
}

output "function_urls" {
  description = "run.app URL of each function."
  value       = module.lrowatch.function_urls
}

output "topics" {
  description = "Full ids of the contract's topics, and of poll's shard-run topic (poll_shards)."
  value       = module.lrowatch.topics
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each push subscription."
  value       = module.lrowatch.dead_letter_topics
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding each push subscription's dead letters for replay."
  value       = module.lrowatch.dead_letter_subscriptions
}

output "push_subscriptions" {
  description = "The managed push subscriptions."
  value       = module.lrowatch.push_subscriptions
}

output "service_accounts" {
  description = "Email of every service account lrowatch runs as."
  value       = module.lrowatch.service_accounts
}

output "handle_service_account" {
  description = "Grant this account roles/pubsub.publisher on any notify_topic outside var.notify_topics."
  value       = module.lrowatch.handle_service_account
}

output "poll_service_account" {
  description = "Grant this account read access to the operations it tracks (and serviceusage.serviceUsageConsumer on quota projects)."
  value       = module.lrowatch.poll_service_account
}

output "scheduler_job" {
  description = "Cloud Scheduler job that drives poll (gcloud scheduler jobs run ... to poll now)."
  value       = module.lrowatch.scheduler_job
}

output "alert_policies" {
  description = "Alert policy names (projects/P/alertPolicies/ID), by alert."
  value       = module.lrowatch.alert_policies
}

output "dashboard" {
  description = "The Cloud Monitoring dashboard's id."
  value       = module.lrowatch.dashboard
}
