"""azure-mgmt clients and the one way every Azure call is made: `call`.

`call` translates azure-core's errors once, by ARM error code and HTTP status,
never by message text: 404 becomes errors.NotFound (delete paths treat it as
done), classified transient codes and connection failures are retried with
capped, jittered backoff until a deadline, and everything else becomes AzureError
carrying ARM's code and message. The SDK's own retry policy is limited to one
attempt so this is the only retry layer. Long-running operations (`begin_*`) are
waited for inside `call`, with the same deadline.

Clients are made per `Azure` object (one operation of the backend), never kept on
a pickled object. Credentials: the caller's own Azure AD login through
azure-identity's DefaultAzureCredential (`az login`, environment, workload or
managed identity; AZURE_TOKEN_CREDENTIALS narrows the chain as azure-identity
documents), never a key.

Emulators: PULUMI_ITERATIVE_ARM_ENDPOINT points the clients at a Resource Manager
other than Azure's. It is honoured only for a plain-HTTP loopback address (a
test's fake): there, and only there, bearer tokens may travel over HTTP. It is
read from this process's environment and never stored in a task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ... import retrying
from ...errors import IterativeError, NotFound, missing_is_done

T = TypeVar("T")

ARM_ENDPOINT_ENV = "PULUMI_ITERATIVE_ARM_ENDPOINT"
SUBSCRIPTION_ENV = "AZURE_SUBSCRIPTION_ID"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# ARM error codes that say "try again later" on any call.
TRANSIENT = frozenset(
    {
        "TooManyRequests",
        "RetryableError",
        "InternalServerError",
        "ServiceUnavailable",
        "GatewayTimeout",
        "InternalExecutionError",
        "OperationPreempted",
        "Conflict",  # "another operation is in progress on the resource"
        "AnotherOperationInProgress",
        "ResourceGroupBeingDeleted",
        "PrincipalNotFound",  # a new identity takes a while to reach Azure AD's replicas
    }
)
# Codes that mean "this object does not exist", whatever the HTTP status.
NOT_FOUND = frozenset(
    {
        "ResourceNotFound",
        "ResourceGroupNotFound",
        "NotFound",
        "RoleAssignmentNotFound",
        "ContainerNotFound",
        "ParentResourceNotFound",
        "StorageAccountNotFound",
    }
)
# Capacity: not transient for the same size and zone (move on instead of waiting).
CAPACITY = frozenset(
    {
        "AllocationFailed",
        "ZonalAllocationFailed",
        "SkuNotAvailable",
        "OverconstrainedAllocationRequest",
        "OperationNotAllowed",
        "QuotaExceeded",
    }
)
DEADLINE = 300.0  # seconds a call keeps retrying transient errors
POLL_INTERVAL = 5  # seconds between LRO polls when ARM sends no Retry-After


class AzureError(IterativeError):
    """Azure refused a request; `code` is ARM's error code ("" for connection failures)."""

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        self.code, self.status = code, status
        super().__init__(message)

    @property
    def capacity(self) -> bool:
        return self.code in CAPACITY


def error_code(exc: Exception) -> tuple[str, int]:
    """(ARM error code, HTTP status) of an azure-core error."""
    status = int(getattr(exc, "status_code", 0) or 0)
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", "") or "")
    if not code:
        response = getattr(exc, "response", None)
        try:
            body = response.json() if response is not None else None  # type: ignore[union-attr]
            code = str(((body or {}).get("error") or {}).get("code") or "")
        except Exception:  # not JSON: the status decides
            code = ""
    return code, status


def _message(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "message", "") or getattr(exc, "message", "") or exc)


def call(
    fn: Callable[..., T],
    /,
    *args: Any,
    retry: tuple[str, ...] = (),
    deadline: float = DEADLINE,
    what: str = "",
    **kwargs: Any,
) -> T:
    """fn(*args, **kwargs), with errors classified once and transient ones retried.

    A poller (what `begin_*` returns) is waited for, and its result returned.
    `retry` adds codes that are transient for this call only.
    """
    from azure.core.exceptions import (
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    label = what or getattr(fn, "__name__", "call")
    end = time.monotonic() + deadline

    def attempt() -> T:
        result = fn(*args, **kwargs)
        if hasattr(result, "result") and hasattr(result, "done"):  # a poller
            poller = result
            result = poller.result(timeout=max(1.0, end - time.monotonic()))
            if not poller.done():
                raise AzureError(f"{label}: not finished after {deadline:g}s", "Timeout")
        return result

    def classify(exc: Exception) -> retrying.Verdict:
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            said = f"{label}: {type(exc).__name__}: {exc}"
            return retrying.Transient(said, AzureError)
        if not isinstance(exc, HttpResponseError):
            return exc
        code, status = error_code(exc)
        message = _message(exc)
        if (status == 404 or code in NOT_FOUND) and code not in retry:
            return NotFound(f"{label}: {code or status}: {message}")
        transient = (
            code in retry
            or code in TRANSIENT
            or status in (408, 429)
            or (status >= 500 and code not in CAPACITY)
        )
        if not transient:
            return AzureError(f"{label}: {code or status}: {message}", code, status)
        return retrying.Transient(
            f"{label}: {code or status}", lambda said: AzureError(said, code, status)
        )

    return retrying.retry(attempt, classify=classify, deadline=deadline)


gone = missing_is_done(call)


def wait_until(
    condition: Callable[[], bool], what: str, *, deadline: float, first: float = 1.0
) -> None:
    """Poll condition with capped, jittered backoff; AzureError when the deadline passes."""
    retrying.wait_until(condition, what, deadline=deadline, first=first, timed_out=AzureError)


def emulator_endpoint(environ: dict[str, str] | None = None) -> str:
    """The Resource Manager override, if it is a plain-HTTP loopback emulator; else ""."""
    value = (os.environ if environ is None else environ).get(ARM_ENDPOINT_ENV, "").strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise IterativeError(
            f"{ARM_ENDPOINT_ENV}={value!r}: only a plain-HTTP loopback emulator "
            "(http://127.0.0.1:<port>) may replace Azure Resource Manager; unset it to use Azure"
        )
    return value.rstrip("/")


def subscription_id(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    found = env.get(SUBSCRIPTION_ENV, "").strip()
    if not found:
        raise IterativeError(
            f"no Azure subscription: set {SUBSCRIPTION_ENV} (see `az account show --query id`)"
        )
    return found


def _auth_policy(credential: Any, endpoint: str) -> Any:
    """ARM's bearer policy; over a loopback emulator's plain HTTP, allowed to send tokens."""
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class LoopbackEmulatorAuth(ARMChallengeAuthenticationPolicy):  # type: ignore[misc]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False  # azure-core reads this per request
            super().on_request(request)

    scope = "https://management.azure.com/.default"
    return LoopbackEmulatorAuth(credential, scope) if endpoint else None


def caller_credential() -> Any:
    """The workstation user's own login (never a key)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


class Azure:
    """The management clients of one subscription, made on first use, for one operation."""

    def __init__(self, subscription: str = "", credential: Any = None) -> None:
        self.subscription = subscription or subscription_id()
        self._credential = credential

    @cached_property
    def credential(self) -> Any:
        return self._credential or caller_credential()

    def _client(self, cls: Any, **extra: Any) -> Any:
        endpoint = emulator_endpoint()
        kwargs: dict[str, Any] = {
            "retry_total": 0,  # call() is the retry layer
            "polling_interval": POLL_INTERVAL,
            **extra,
        }
        if endpoint:
            kwargs["base_url"] = endpoint
            kwargs["authentication_policy"] = _auth_policy(self.credential, endpoint)
        return cls(self.credential, self.subscription, **kwargs)

    @cached_property
    def compute(self) -> Any:
        from azure.mgmt.compute import ComputeManagementClient

        return self._client(ComputeManagementClient)

    @cached_property
    def network(self) -> Any:
        from azure.mgmt.network import NetworkManagementClient

        return self._client(NetworkManagementClient)

    @cached_property
    def msi(self) -> Any:
        from azure.mgmt.msi import ManagedServiceIdentityClient

        return self._client(ManagedServiceIdentityClient)

    @cached_property
    def authorization(self) -> Any:
        from azure.mgmt.authorization import AuthorizationManagementClient

        return self._client(AuthorizationManagementClient, api_version="2022-04-01")

    @cached_property
    def storage(self) -> Any:
        from azure.mgmt.storage import StorageManagementClient

        return self._client(StorageManagementClient)

    @cached_property
    def resources(self) -> Any:
        from azure.mgmt.resource.resources import ResourceManagementClient

        return self._client(ResourceManagementClient)

    @cached_property
    def monitor(self) -> Any:
        from azure.mgmt.monitor import MonitorManagementClient

        return self._client(MonitorManagementClient)
