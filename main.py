"""lrowatch's Cloud Functions entry points (contract §1). Nothing else lives here."""
import functions_framework

from functions import wiring
from functions.adapters import http_api, pubsub_push
from functions.services.handle import PoisonMessage


@functions_framework.http
def submit(request):
    """Track an operation; read tracked operations; request a cancellation."""
    return http_api.submit_routes(request, wiring.current().submit)


@functions_framework.cloud_event
def submit_pubsub(cloud_event):
    """The same submission, from a message on the submissions topic."""
    pubsub_push.deliver(cloud_event, lambda data: wiring.current().submit.submit(data, source="pubsub"))


@functions_framework.http
def poll(request):
    """One poll run (Cloud Scheduler): claim due operations, GET them, publish changes."""
    return http_api.poll_route(request, wiring.current().poll)


@functions_framework.cloud_event
def handle(cloud_event):
    """State-change events and commands: completion, errors, cancellation."""
    pubsub_push.deliver(cloud_event, wiring.current().handle.handle, poison=(PoisonMessage,))
