"""Google clients and the one way every GCP call is made: `call`.

`call` translates google-api-core's exceptions once, by their class (the HTTP
status), never by message text: 404 becomes errors.NotFound (delete paths treat it
as done); classified transient failures (429, 500, 502, 503, 504, connection
errors) are retried with capped, jittered backoff until a deadline; everything else
becomes GcpError carrying the HTTP status and what Google said. A long-running
compute Operation is waited for inside the same call, so a failed operation is
translated the same way.

Clients are made per operation, never kept on a pickled object. Compute uses
google-cloud-compute over REST; IAM and Resource Manager, whose needs here are a
handful of JSON calls, go through google-auth's authorized session (the same
transport and credentials, no extra SDK), and so does a machine's one compute call
(leaving its group: the compute library is not installed on machines); storage uses
google-cloud-storage.

Endpoints and credentials:
- workstation: application default credentials (`gcloud auth application-default
  login`, or GOOGLE_APPLICATION_CREDENTIALS), the project from GOOGLE_CLOUD_PROJECT,
  CLOUDSDK_CORE_PROJECT or those credentials;
- machine: the instance's service account through the metadata server;
- emulators (tests only): PULUMI_ITERATIVE_GCP_ENDPOINT points compute, IAM and
  Resource Manager at one fake address, and STORAGE_EMULATOR_HOST (honoured by
  google-cloud-storage itself) at a GCS emulator. With PULUMI_ITERATIVE_GCP_ENDPOINT
  set, the workstation calls anonymously; a machine still sends its own token.
  Neither variable is written into anything a machine boots from (the machine
  simulator sets them in the machine's process); only the GCS emulator's address
  reaches machines, as the rclone setting of the task's remote (names.remote_env,
  which the wheel's fetch and a failed boot's upload read too: names.storage_api),
  and only when STORAGE_EMULATOR_HOST was set at create.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ... import retrying
from ...errors import IterativeError, NotFound, missing_is_done
from .names import ENDPOINT_ENV

log = logging.getLogger(__name__)

T = TypeVar("T")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
COMPUTE = "https://compute.googleapis.com/"
IAM = "https://iam.googleapis.com/"
CRM = "https://cloudresourcemanager.googleapis.com/"
DEADLINE = 120.0  # seconds a call keeps retrying transient errors
OPERATION_TIMEOUT = 600.0  # a compute operation (an instance group's, say) may take minutes
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class GcpError(IterativeError):
    """Google refused a request; `status` is the HTTP status (0 for connection failures)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


def endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV, "").rstrip("/")


def credentials(*, on_machine: bool = False) -> Any:
    """The caller's credentials, or on a machine its service account's."""
    if on_machine:
        from google.auth import compute_engine

        return compute_engine.Credentials(scopes=list(SCOPES))
    if endpoint():
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth

    found, _ = google.auth.default(scopes=list(SCOPES))
    return found


def default_project() -> str:
    """The project the caller works in ("" when nothing says)."""
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"):
        if os.environ.get(name):
            return os.environ[name]
    if endpoint():
        return ""
    try:
        import google.auth

        _, project = google.auth.default()
    except Exception as exc:  # no credentials at all: the caller is told by prepare
        log.debug("no default project: %s", exc)
        return ""
    return str(project or "")


def compute(kind: str, *, on_machine: bool = False) -> Any:
    """A google-cloud-compute client over REST, e.g. compute("RegionInstanceGroupManagers")."""
    from google.cloud import compute_v1

    options = {"api_endpoint": endpoint()} if endpoint() else None
    cls = getattr(compute_v1, f"{kind}Client")
    return cls(
        credentials=credentials(on_machine=on_machine), transport="rest", client_options=options
    )


def session(*, on_machine: bool = False) -> Any:
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(credentials(on_machine=on_machine))


def storage(project: str) -> Any:
    from google.cloud import storage as gcs

    return gcs.Client(project=project or None, credentials=credentials())


def rest(verb: str, api: str, path: str, body: Any = None, *, on_machine: bool = False) -> Any:
    """One JSON call (IAM, Resource Manager, a machine's compute call); errors as
    google-api-core raises them, so `call` classifies them like the clients' own."""
    from google.api_core import exceptions

    base = (endpoint() + "/") if endpoint() else api
    answer = session(on_machine=on_machine).request(
        verb, base + path.lstrip("/"), json=body, timeout=60
    )
    if answer.status_code >= 400:
        raise exceptions.from_http_response(answer)
    return answer.json() if answer.content else {}


def _is_transient(exc: BaseException) -> bool:
    from google.api_core import exceptions

    if isinstance(exc, exceptions.GoogleAPICallError):
        return int(exc.code or 0) in TRANSIENT_STATUS
    import requests

    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


def call(
    fn: Callable[..., T],
    /,
    *args: Any,
    retry: Iterable[int] = (),
    deadline: float = DEADLINE,
    **kwargs: Any,
) -> T:
    """fn(*args, **kwargs), waited for if it is an operation, with errors classified
    once and transient ones retried. `retry` adds HTTP statuses that are transient for
    this call only (409 for a policy written by someone else meanwhile)."""
    from google.api_core import exceptions

    extra = frozenset(retry)
    name = getattr(fn, "__name__", "call")

    def attempt() -> T:
        result = fn(*args, **kwargs)
        if hasattr(result, "result") and hasattr(result, "done"):  # an ExtendedOperation
            _wait(result, name)
        return result

    def classify(exc: Exception) -> retrying.Verdict:
        if isinstance(exc, exceptions.GoogleAPICallError):
            status = int(exc.code or 0)
            if status == 404 and 404 not in extra:
                return NotFound(f"{name}: {exc.message}")
            if not (status in extra or _is_transient(exc)):
                return GcpError(f"{name}: {status} {exc.message}", status)
            return retrying.Transient(f"{name}: {status}", lambda said: GcpError(said, status))
        if isinstance(exc, GcpError):  # from a call() inside fn: already classified
            if exc.status not in extra:
                return exc
            return retrying.Transient(str(exc), lambda said: GcpError(said, exc.status))
        if not _is_transient(exc):
            return exc
        return retrying.Transient(f"{type(exc).__name__}: {exc}", GcpError)

    return retrying.retry(attempt, classify=classify, deadline=deadline)


def _wait(operation: Any, name: str) -> None:
    """Wait for a compute operation; a failed one says what its errors say (the
    exception alone carries only the HTTP reason phrase)."""
    from google.api_core import exceptions

    try:
        operation.result(timeout=OPERATION_TIMEOUT)
    except exceptions.GoogleAPICallError as exc:
        details = "; ".join(
            f"{e.code}: {e.message}" for e in getattr(operation.error, "errors", None) or []
        )
        if details:
            exc.message = f"{exc.message}: {details}"
        raise


gone = missing_is_done(call)


def exists_ok(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T | None:
    """A create where "already exists" (409) means done (re-running after a failure)."""
    try:
        return call(fn, *args, **kwargs)
    except GcpError as exc:
        if exc.status == 409:
            return None
        raise


def wait_until(
    condition: Callable[[], bool], what: str, *, deadline: float, first: float = 0.5
) -> None:
    """Poll condition with capped, jittered backoff; GcpError when the deadline passes."""
    retrying.wait_until(condition, what, deadline=deadline, first=first, timed_out=GcpError)
