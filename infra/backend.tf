# Remote state in a GCS bucket, configured at `terraform init` time
# (partial configuration), e.g.:
#   terraform init -backend-config=bucket=MY_STATE_BUCKET -backend-config=prefix=lrowatch
# See docs/deploy.md for creating the bucket.
terraform {
  backend "gcs" {}
}
