"""lrowatch's Cloud Functions entry points (contract §1). Nothing else lives here."""
import flask
import functions_framework

from functions import logs, wiring
from functions.adapters import http_api, pubsub_push
from functions.services.handle import PoisonMessage


@functions_framework.http
def submit(request):
    """Track an operation; read tracked operations; request a cancellation."""
    services = wiring.current()
    with logs.traced(request.headers, services.settings.project):
        return http_api.submit_routes(request, services.submit)


@functions_framework.cloud_event
def submit_pubsub(cloud_event):
    """The same submission, from a message on the submissions topic."""
    services = wiring.current()
    envelope = pubsub_push.push_envelope(cloud_event, flask.request)  # keeps deliveryAttempt, orderingKey
    with logs.traced(pubsub_push.trace_headers(envelope, flask.request.headers), services.settings.project):
        pubsub_push.deliver(cloud_event, lambda data: services.submit.submit(data, source="pubsub"),
                            envelope=envelope)


@functions_framework.http
def poll(request):
    """One poll run (Cloud Scheduler): claim due operations, GET them, publish changes."""
    services = wiring.current()
    with logs.traced(request.headers, services.settings.project):
        return http_api.poll_route(request, services.poll)


@functions_framework.cloud_event
def handle(cloud_event):
    """State-change events and commands: completion, errors, cancellation."""
    services = wiring.current()
    envelope = pubsub_push.push_envelope(cloud_event, flask.request)
    # The event's traceparent: handle's lines join the trace of the poll run that observed the change.
    with logs.traced(pubsub_push.trace_headers(envelope, flask.request.headers), services.settings.project):
        pubsub_push.deliver(cloud_event, services.handle.handle, poison=(PoisonMessage,), envelope=envelope)
