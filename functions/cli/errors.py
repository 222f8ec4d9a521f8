"""What can go wrong in the CLI, each with its exit code and a hint for the user."""
from __future__ import annotations

OK = 0
API_ERROR = 1  # the service refused the request (4xx)
USAGE = 2  # the command line itself is wrong (argparse uses 2 as well)
UNREACHABLE = 3  # no answer, no credentials, or the service is unavailable (5xx)
NOT_FOUND = 4  # the operation (or resource) does not exist
# `wait` (and `watch ID`): how the operations ended. See WAIT_EXIT_CODES in the README.
FAILED = 5  # an operation ended FAILED
CANCELLED = 6  # an operation ended CANCELLED
STOPPED_TRACKING = 7  # lrowatch stopped tracking it: EXPIRED or TIMED_OUT
WAIT_TIMEOUT = 8  # the wait's own --timeout passed first
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """A failure to report as `error: message` (+ hint) with `exit_code`."""

    exit_code = API_ERROR

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.message, self.hint, self.status, self.body = message, hint, status, body


class UsageError(CliError):
    """The arguments are wrong or incomplete."""

    exit_code = USAGE


class Unreachable(CliError):
    """The service could not be reached, refused our identity, or is unavailable."""

    exit_code = UNREACHABLE


class NotFoundError(CliError):
    """The service answered 404."""

    exit_code = NOT_FOUND


class WaitTimeout(CliError):
    """The wait's own --timeout passed before every operation finished."""

    exit_code = WAIT_TIMEOUT


class ApiError(CliError):
    """The service answered 4xx other than 404 and the auth statuses."""

    exit_code = API_ERROR


def transient(exc: CliError) -> bool:
    """Worth retrying: no answer at all, 429, or a 5xx (never 401/403: those need a person)."""
    return isinstance(exc, Unreachable) and (exc.status is None or exc.status == 429 or exc.status >= 500)
