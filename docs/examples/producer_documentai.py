"""Hand a Document AI batch to lrowatch, over HTTP or over Pub/Sub.

    from producer_documentai import start_batch_and_track
    record = start_batch_and_track("my-project", "us", "PROCESSOR_ID",
                                   "gs://in/*.pdf", "gs://out/", submit_url=SUBMIT_URL)

The Python client answers a batch request with a google.api_core Operation:
`operation.operation.name` is the long-running operation's name
(projects/P/locations/L/operations/ID). lrowatch needs that name and the
service; it builds the regional endpoint (us-documentai.googleapis.com) itself.

Needs: google-cloud-documentai (only for start_batch_and_track), google-auth,
requests, google-cloud-pubsub (only for track_over_pubsub). The caller needs
roles/run.invoker on lrowatch's submit function (HTTP) or
roles/pubsub.publisher on its submissions topic (Pub/Sub).
"""
from __future__ import annotations

import json

import requests

SERVICE = "documentai.googleapis.com"


def track_over_http(operation_name: str, submit_url: str, *, labels: dict | None = None,
                    correlation_id: str | None = None, timeout_s: float = 30.0) -> dict:
    """POST the operation to lrowatch's submit function; returns the tracked record.
    201 = newly tracked, 200 = already tracked (submitting twice is safe)."""
    body = {"name": operation_name, "service": SERVICE, "labels": labels or {}}
    if correlation_id:
        body["correlation_id"] = correlation_id
    headers = {}
    if submit_url.startswith("https://"):  # a deployed function: a Google ID token for its URL
        import google.auth.transport.requests
        import google.oauth2.id_token

        audience = "/".join(submit_url.split("/")[:3])
        token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
        headers["Authorization"] = f"Bearer {token}"
    response = requests.post(submit_url.rstrip("/") + "/operations", json=body, headers=headers,
                             timeout=timeout_s, allow_redirects=False)
    response.raise_for_status()
    return response.json()


def track_over_pubsub(operation_name: str, topic_path: str, *, labels: dict | None = None,
                      publisher=None) -> str:
    """Publish the submission on lrowatch's submissions topic; returns the message id.
    lrowatch answers nothing here: watch the events topic or GET the record."""
    from google.cloud import pubsub_v1

    publisher = publisher or pubsub_v1.PublisherClient()
    body = {"name": operation_name, "service": SERVICE, "labels": labels or {}}
    return publisher.publish(topic_path, json.dumps(body).encode()).result(timeout=30)


def start_batch_and_track(project: str, location: str, processor_id: str, gcs_input: str, gcs_output: str,
                          submit_url: str) -> dict:
    """Start a Document AI batch and hand its operation to lrowatch at once."""
    from google.cloud import documentai

    client = documentai.DocumentProcessorServiceClient(
        client_options={"api_endpoint": f"{location}-documentai.googleapis.com"})
    operation = client.batch_process_documents(request=documentai.BatchProcessRequest(
        name=client.processor_path(project, location, processor_id),
        input_documents=documentai.BatchDocumentsInputConfig(
            gcs_prefix=documentai.GcsPrefix(gcs_uri_prefix=gcs_input)),
        document_output_config=documentai.DocumentOutputConfig(
            gcs_output_config=documentai.DocumentOutputConfig.GcsOutputConfig(gcs_uri=gcs_output)),
    ))
    # No operation.result() here: lrowatch waits, and tells your topic or webhook when it is done.
    return track_over_http(operation.operation.name, submit_url, labels={"source": "docai-batch"})
