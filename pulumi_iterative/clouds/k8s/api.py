"""The official `kubernetes` client and the one way every call is made: `call`.

`call` translates the client's errors once, by HTTP status and the `reason` of the
API server's Status object, never by message text: 404 becomes errors.NotFound
(delete paths treat it as done); 409 AlreadyExists, 403 Forbidden, 422 Invalid and
the rest become K8sError carrying the reason and the server's message; 429, 5xx and
connection failures are transient and retried with capped, jittered backoff until
a deadline (the client's own urllib3 retries are off, so this is the only layer).

Which cluster: a `Target` names the kubeconfig file ("" = $KUBECONFIG or
~/.kube/config), the context ("" = current) and the namespace ("" = the context's,
else "default"). Inside a pod with no kubeconfig, the in-cluster service account is
used. Clients are made per call site and cached per target (module level, never on a
pickled object); no credential is copied out of the client's configuration.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from ...errors import IterativeError, NotFound

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLINE = 120.0  # seconds a call keeps retrying transient errors
BACKOFF_BASE = 0.5
BACKOFF_CAP = 15.0
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class K8sError(IterativeError):
    """The API server refused a request; `reason` is its Status reason ("" if none)."""

    def __init__(self, message: str, reason: str = "", status: int = 0) -> None:
        self.reason, self.status = reason, status
        super().__init__(message)


@dataclass(frozen=True)
class Target:
    """Which cluster and namespace: all strings, safe to keep in state."""

    kubeconfig: str = ""
    context: str = ""
    namespace: str = ""


def _in_cluster(target: Target) -> bool:
    if target.kubeconfig or os.environ.get("KUBECONFIG"):
        return False
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and not (Path.home() / ".kube" / "config").exists()
    )


_clients: dict[tuple[str, str, float], Any] = {}
_clients_lock = threading.Lock()


def api_client(target: Target) -> Any:
    """A kubernetes.client.ApiClient for the target, reused while its kubeconfig is unchanged."""
    from kubernetes import client, config

    if _in_cluster(target):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        configuration.retries = False
        return client.ApiClient(configuration)
    path = target.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = path or str(Path.home() / ".kube" / "config")
    try:
        stamp = Path(path).stat().st_mtime
    except OSError as exc:
        raise K8sError(
            f"no kubeconfig at {path}: point KUBECONFIG at your cluster's kubeconfig "
            "(or give its path as the task's kubeconfig)"
        ) from exc
    key = (path, target.context, stamp)
    with _clients_lock:
        made = _clients.get(key)
        if made is None:
            configuration = client.Configuration()
            try:
                config.load_kube_config(
                    config_file=path,
                    context=target.context or None,
                    client_configuration=configuration,
                )
            except config.ConfigException as exc:
                raise K8sError(f"kubeconfig {path}: {exc}") from exc
            configuration.retries = False  # `call` is the only retry layer
            made = _clients[key] = client.ApiClient(configuration)
    return made


def context_of(target: Target) -> str:
    """The context name the target means, pinned ("" = current is resolved; "" in-cluster)."""
    if target.context or _in_cluster(target):
        return target.context
    from kubernetes import config

    path = target.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        _, current = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError) as exc:
        raise K8sError(f"cannot read the kubeconfig: {exc}") from exc
    return str((current or {}).get("name") or "")


def namespace_of(target: Target) -> str:
    """The namespace to use: the target's, else the context's, else "default"."""
    if target.namespace:
        return target.namespace
    if _in_cluster(target):
        try:
            return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"
    from kubernetes import config

    path = target.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError) as exc:
        raise K8sError(f"cannot read the kubeconfig: {exc}") from exc
    chosen = (
        next((c for c in contexts if c["name"] == target.context), None)
        if target.context
        else current
    )
    if target.context and chosen is None:
        names = ", ".join(c["name"] for c in contexts)
        raise K8sError(f"region: no context {target.context!r} in the kubeconfig; it has {names}")
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class Kube:
    """The typed APIs of one target, made on first use, plus its namespace."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @cached_property
    def namespace(self) -> str:
        return namespace_of(self.target)

    @cached_property
    def client(self) -> Any:
        return api_client(self.target)

    @cached_property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.client)

    @cached_property
    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.client)

    @cached_property
    def rbac(self) -> Any:
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self.client)


def _status_body(exc: Any) -> dict[str, Any]:
    try:
        found = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _connection_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions

    return (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def call(fn: Callable[..., T], /, *args: Any, deadline: float = DEADLINE, **kwargs: Any) -> T:
    """fn(*args, **kwargs) with errors classified once and transient ones retried."""
    from kubernetes.client.exceptions import ApiException

    end = time.monotonic() + deadline
    attempt = 0
    what = getattr(fn, "__name__", "call")
    while True:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            body = _status_body(exc)
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or exc.reason or exc)
            status = int(exc.status or 0)
            if status == 404:
                raise NotFound(f"{what}: {message}") from exc
            if status not in TRANSIENT_STATUS:
                raise K8sError(f"{what}: {reason or status}: {message}", reason, status) from exc
            failure: BaseException = exc
            said = f"{what}: {reason or status}"
        except _connection_errors() as exc:
            failure, said, status, reason = exc, f"{what}: {type(exc).__name__}: {exc}", 0, ""
        attempt += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
        if time.monotonic() + delay > end:
            raise K8sError(
                f"{said} (still failing after {attempt} attempts in {deadline:g}s)", reason, status
            ) from failure
        log.debug("retrying in %.1fs after %s", delay, said)
        time.sleep(delay)


def gone(fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
    """A delete where "not found" means done."""
    try:
        call(fn, *args, **kwargs)
    except NotFound:
        pass


def created(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T | None:
    """A create where "already exists" means done (a re-run after a failure)."""
    try:
        return call(fn, *args, **kwargs)
    except K8sError as exc:
        if exc.reason == "AlreadyExists":
            return None
        raise


def wait_until(
    condition: Callable[[], bool], what: str, *, deadline: float, first: float = 0.2
) -> None:
    """Poll condition with capped, jittered backoff; K8sError when the deadline passes."""
    end = time.monotonic() + deadline
    delay = first
    while not condition():
        if time.monotonic() + delay > end:
            raise K8sError(f"timed out after {deadline:g}s waiting for {what}")
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(5.0, delay * 2)
