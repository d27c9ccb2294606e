"""boto3 clients and the one way every AWS call is made: `call`.

`call` translates botocore's error codes once, never message text: "not found"
codes become errors.NotFound (delete paths treat it as done), classified
transient codes and connection failures are retried with capped, jittered
backoff until a deadline, and everything else becomes AwsError carrying the code
and what AWS said. botocore's own retries are off so this is the only retry
layer. Clients are made per operation (never kept on a pickled object); the
endpoint override `AWS_ENDPOINT_URL` (an emulator) is honoured by boto3 itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from ... import retrying
from ...errors import IterativeError, NotFound, missing_is_done
from .names import TASK_TAG, endpoint_override

T = TypeVar("T")

# Codes meaning "this object does not exist" (S3, IAM, EC2, launch templates).
NOT_FOUND = frozenset(
    {
        "404",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "NoSuchEntity",
        "InvalidGroup.NotFound",
        "InvalidGroupId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateId.NotFoundException",
        "InvalidInstanceID.NotFound",
        "InvalidAMIID.NotFound",
    }
)
# Codes that say "try again later" on any call.
TRANSIENT = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "EC2ThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
    }
)
CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)
DEADLINE = 120.0  # seconds a call keeps retrying transient errors
IAM_PROPAGATION = 120.0  # a new role or profile can be invisible to other services this long


def iam_not_yet(code: str, message: str) -> bool:
    """An instance profile made seconds ago, not yet visible to EC2 or Auto Scaling.

    AWS says so only with a ValidationError and this text (Terraform's AWS provider
    retries exactly this, for two minutes); every other ValidationError is final.
    """
    return code == "ValidationError" and "Invalid IAM Instance Profile" in message


class AwsError(IterativeError):
    """AWS refused a request; `code` is its error code ("" for connection failures)."""

    def __init__(self, message: str, code: str = "") -> None:
        self.code = code
        super().__init__(message)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def call(
    fn: Callable[..., T],
    /,
    *,
    retry: Iterable[str] = (),
    retry_when: Callable[[str, str], bool] | None = None,
    deadline: float = DEADLINE,
    **kwargs: Any,
) -> T:
    """fn(**kwargs), with errors classified once and transient ones retried.

    `retry` adds codes that are transient for this call only (for example
    DependencyViolation while a security group's instances are still going away);
    `retry_when(code, message)` the rare transient error AWS gives only a generic
    code for (IAM propagation: see IAM_NOT_YET).
    """
    extra = frozenset(retry)

    def classify(exc: Exception) -> retrying.Verdict:
        if isinstance(exc, CONNECTION_ERRORS):
            return retrying.Transient(f"{type(exc).__name__}: {exc}", AwsError)
        if not isinstance(exc, ClientError):
            return exc
        code = error_code(exc)
        op = exc.operation_name
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code not in extra and code in NOT_FOUND:
            return NotFound(f"{op}: {code}: {message}")
        transient = code in extra or code in TRANSIENT or _status(exc) >= 500
        if not (transient or (retry_when is not None and retry_when(code, message))):
            return AwsError(f"{op}: {code}: {message}", code)
        return retrying.Transient(f"{op}: {code}", lambda said: AwsError(said, code))

    return retrying.retry(lambda: fn(**kwargs), classify=classify, deadline=deadline)


gone = missing_is_done(call)


def wait_until(
    condition: Callable[[], bool], what: str, *, deadline: float, first: float = 1.0
) -> None:
    """Poll condition with capped, jittered backoff; AwsError when the deadline passes."""
    retrying.wait_until(condition, what, deadline=deadline, first=first, timed_out=AwsError)


# What decides a client's endpoint and credentials: a client is reused only while
# these are unchanged (hashed, so no credential is kept in another structure).
_CLIENT_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
)
_clients: dict[tuple[str, str, bool, str], Any] = {}
_clients_lock = threading.Lock()


def client(service: str, region: str, *, on_machine: bool = False) -> Any:
    """A boto3 client with botocore's retries off (call() retries) and, against an
    emulator endpoint, path-style S3 addressing.

    Clients are thread-safe and costly to make, so one is kept per service,
    region and environment (module level, never on a pickled object). On a
    task's machine (`on_machine`) credentials come from the instance role through
    IMDS; botocore asks it once with a 1 s timeout by default, which a busy
    machine can miss, so there it asks up to 3 times with 3 s each.
    """
    fingerprint = hashlib.sha256(
        "\0".join(os.environ.get(k, "") for k in _CLIENT_ENV).encode()
    ).hexdigest()
    cache_key = (service, region, on_machine, fingerprint)
    with _clients_lock:
        made = _clients.get(cache_key)
        if made is None:
            config = Config(
                retries={"total_max_attempts": 1},
                connect_timeout=10,
                read_timeout=60,
                s3={"addressing_style": "path"} if endpoint_override() else None,
            )
            core = botocore.session.get_session()
            if on_machine:
                core.set_config_variable("metadata_service_timeout", 3)
                core.set_config_variable("metadata_service_num_attempts", 3)
            session = boto3.session.Session(region_name=region, botocore_session=core)
            made = _clients[cache_key] = session.client(service, config=config)  # type: ignore[call-overload]
    return made


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class Aws:
    """The clients of one region, made on first use, for one operation."""

    def __init__(self, region: str) -> None:
        self.region = region

    @cached_property
    def s3(self) -> Any:
        return client("s3", self.region)

    @cached_property
    def iam(self) -> Any:
        return client("iam", self.region)

    @cached_property
    def sts(self) -> Any:
        return client("sts", self.region)

    @cached_property
    def ec2(self) -> Any:
        return client("ec2", self.region)

    @cached_property
    def autoscaling(self) -> Any:
        return client("autoscaling", self.region)

    @cached_property
    def account(self) -> str:
        return str(call(self.sts.get_caller_identity)["Account"])


def tag_list(task_id: str, tags: Mapping[str, str]) -> list[dict[str, str]]:
    merged = {**dict(tags), TASK_TAG: task_id}
    return [{"Key": k, "Value": v} for k, v in sorted(merged.items())]


def exists_ok(fn: Any, codes: Iterable[str], /, **kwargs: Any) -> Any:
    """A create where "already exists" means done (re-running after a failure)."""
    try:
        return call(fn, **kwargs)
    except AwsError as exc:
        if exc.code in set(codes):
            return None
        raise
