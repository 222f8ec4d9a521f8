# The module's provider and Terraform versions (the caller configures the
# providers; see infra/versions.tf). The google provider is pinned to a range:
# 5.40 is the oldest release with every argument used here
# (build_config.service_account, firestore ttl_config, push oidc_token).
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
