"""One exception class per failure mode, each mapped to a google.rpc code."""
from __future__ import annotations


class LroError(Exception):
    """Base of lrowatch's own errors; carries an HTTP status and a google.rpc status name."""

    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict:
        """Google's error body (AIP-193)."""
        return {"error": {"code": self.http_status, "status": self.status, "message": self.message}}


class ConfigError(LroError):
    """The deployment's environment is wrong; fix the configuration."""

    status = "FAILED_PRECONDITION"


class InvalidArgument(LroError):
    """The caller's input is malformed or refused; nothing was stored."""

    http_status = 400
    status = "INVALID_ARGUMENT"


class FailedPrecondition(LroError):
    """The request is well formed but the operation's API cannot do it (e.g. no :cancel)."""

    http_status = 400
    status = "FAILED_PRECONDITION"


class NotFound(LroError):
    """No tracked operation has that id."""

    http_status = 404
    status = "NOT_FOUND"


class MethodNotAllowed(LroError):
    """The path exists but not with that HTTP method."""

    http_status = 405
    status = "UNIMPLEMENTED"


class PayloadTooLarge(LroError):
    """The request body is larger than lrowatch accepts."""

    http_status = 413
    status = "INVALID_ARGUMENT"


class UnsupportedMediaType(LroError):
    """The request body is not JSON."""

    http_status = 415
    status = "INVALID_ARGUMENT"


class TransientError(LroError):
    """A dependency (Firestore, Pub/Sub) is unavailable: retry later."""

    http_status = 503
    status = "UNAVAILABLE"


class ApiUnavailable(TransientError):
    """The Operations API answered 429/5xx or not at all: retry later."""


class PermissionDenied(LroError):
    """The submission names a project lrowatch may not act in (LRO_ALLOWED_PARENTS)."""

    http_status = 403
    status = "PERMISSION_DENIED"


class AlreadyExists(LroError):
    """The operation is already tracked with other settings than the ones submitted."""

    http_status = 409
    status = "ALREADY_EXISTS"
