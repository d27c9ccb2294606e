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
used (its token and CA in `SERVICE_ACCOUNT_DIR`, the API server from
KUBERNETES_SERVICE_HOST/PORT). A target pinned to a cluster (`server`, `ca`: what
`cluster_identity` says at create) uses whichever context of the caller's kubeconfig
points at that cluster, the named one first: a teammate's kubeconfig may name it
differently. Clients are made per call site and cached per target (module level,
never on a pickled object); no credential is copied out of the client's configuration.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ... import retrying
from ...errors import IterativeError, NotFound, missing_is_done

T = TypeVar("T")

DEADLINE = 120.0  # seconds a call keeps retrying transient errors
# Each request's (connect, read) timeout: without one the client waits forever on a
# connection the network dropped silently; a timed-out request is retried as transient.
REQUEST_TIMEOUT = (15.0, 60.0)
POLL_CAP = 5.0  # seconds between wait_until's polls at the most: pods change fast
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
# Where a pod's service account token, CA and namespace are mounted (tests point it
# at a folder of their own).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


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
    server: str = ""  # pinned: the cluster's API server URL ("" = not pinned)
    ca: str = ""  # pinned: SHA-256 of the cluster's CA certificate ("" = none known)


@dataclass(frozen=True)
class Cluster:
    """One context of a kubeconfig: its name and the cluster it points at."""

    context: str
    server: str
    ca: str  # SHA-256 of the CA certificate, "" if the kubeconfig gives none
    namespace: str

    def is_(self, target: Target) -> bool:
        """The target's pinned cluster: the same server URL, or the same CA (the URL
        differs inside and outside the cluster, or by DNS name and address)."""
        return self.server.rstrip("/") == target.server.rstrip("/") or bool(
            target.ca and self.ca == target.ca
        )


def ca_fingerprint(pem: bytes) -> str:
    """SHA-256 of the first certificate's DER bytes (the same for inline data and a file)."""
    found = re.search(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    body = base64.b64decode(b"".join(found.group(1).split())) if found else pem.strip()
    return hashlib.sha256(body).hexdigest() if body else ""


def _kubeconfig_path(target: Target) -> str:
    path = target.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return path or str(Path.home() / ".kube" / "config")


def kubeconfig_clusters(path: str) -> tuple[list[Cluster], str]:
    """Every context of the kubeconfig with its cluster, and the current context's name."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise K8sError(
            f"no kubeconfig at {path}: point KUBECONFIG at your cluster's kubeconfig"
        ) from exc
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise K8sError(f"kubeconfig {path} is not YAML: {exc}") from exc
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or []}
    out = []
    for entry in doc.get("contexts") or []:
        context = entry.get("context") or {}
        cluster = clusters.get(context.get("cluster")) or {}
        pem = b""
        if cluster.get("certificate-authority-data"):
            pem = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            with contextlib.suppress(OSError):
                pem = (Path(path).parent / cluster["certificate-authority"]).read_bytes()
        out.append(
            Cluster(
                str(entry.get("name") or ""),
                str(cluster.get("server") or ""),
                ca_fingerprint(pem) if pem else "",
                str(context.get("namespace") or ""),
            )
        )
    return out, str(doc.get("current-context") or "")


def _in_cluster_identity() -> Cluster:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    try:
        ca = ca_fingerprint((SERVICE_ACCOUNT_DIR / "ca.crt").read_bytes())
    except OSError:
        ca = ""
    return Cluster("", f"https://{host}:{port}", ca, "")


def cluster_identity(target: Target) -> Cluster:
    """The context the target means (named, else current) and its cluster, to pin."""
    if _in_cluster(target):
        return _in_cluster_identity()
    path = _kubeconfig_path(target)
    clusters, current = kubeconfig_clusters(path)
    name = target.context or current
    found = next((c for c in clusters if c.context == name), None)
    if found is None:
        names = ", ".join(c.context for c in clusters) or "none"
        raise K8sError(f"region: no context {name!r} in {path}; it has {names}")
    return found


def pinned_context(target: Target) -> str:
    """The caller's context for a pinned target: the named one if it points at the
    cluster, else the current one, else any that does. K8sError if none does."""
    if not (target.server or target.ca):
        return target.context
    path = _kubeconfig_path(target)
    clusters, current = kubeconfig_clusters(path)
    matching = [c for c in clusters if c.is_(target)]
    for preferred in (target.context, current):
        if any(c.context == preferred for c in matching):
            return preferred
    if matching:
        return matching[0].context
    raise K8sError(
        f"the task runs on the cluster at {target.server}, and no context in {path} "
        "points at it: add one for that cluster (any name; the same server URL or CA)"
    )


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
        return _in_cluster_client(target)
    path = _kubeconfig_path(target)
    try:
        stamp = Path(path).stat().st_mtime
    except OSError as exc:
        raise K8sError(
            f"no kubeconfig at {path}: point KUBECONFIG at your cluster's kubeconfig"
        ) from exc
    context = pinned_context(target)
    key = (path, context, stamp)
    with _clients_lock:
        made = _clients.get(key)
        if made is None:
            configuration = client.Configuration()
            try:
                config.load_kube_config(
                    config_file=path,
                    context=context or None,
                    client_configuration=configuration,
                )
            except config.ConfigException as exc:
                raise K8sError(f"kubeconfig {path}: {exc}") from exc
            made = _clients[key] = _made_client(configuration)
    return made


def _made_client(configuration: Any) -> Any:
    """The ApiClient every call goes through: no retries of its own (`call` is the only
    retry layer) and REQUEST_TIMEOUT on every request that does not set one, whichever
    way the call is made (an API method, or a lambda around one as `ensure` passes)."""
    from kubernetes import client
    from kubernetes.client import rest

    class TimedRest(rest.RESTClientObject):  # type: ignore[misc]
        def request(self, *args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
            timeout = _request_timeout or REQUEST_TIMEOUT
            return super().request(*args, _request_timeout=timeout, **kwargs)

    configuration.retries = False
    made = client.ApiClient(configuration)
    made.rest_client = TimedRest(configuration)
    return made


def _in_cluster_client(target: Target) -> Any:
    """The pod's own service account: token and CA from SERVICE_ACCOUNT_DIR (the token
    is re-read when it rotates), the API server from the environment."""
    from kubernetes import client
    from kubernetes.config import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    if (target.server or target.ca) and not _in_cluster_identity().is_(target):
        raise K8sError(
            f"the task runs on the cluster at {target.server}, not on the one this pod "
            "runs in: use a kubeconfig with a context for that cluster (KUBECONFIG)"
        )
    configuration = client.Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(SERVICE_ACCOUNT_DIR / "token"),
        cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
    )
    try:
        loader.load_and_set(configuration)
    except ConfigException as exc:
        raise K8sError(f"in-cluster configuration ({SERVICE_ACCOUNT_DIR}): {exc}") from exc
    return _made_client(configuration)


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
            return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
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

    what = getattr(fn, "__name__", "call")

    def classify(exc: Exception) -> retrying.Verdict:
        if isinstance(exc, ApiException):
            body = _status_body(exc)
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or exc.reason or exc)
            status = int(exc.status or 0)
            if status == 404:
                return NotFound(f"{what}: {message}")
            if status not in TRANSIENT_STATUS:
                return K8sError(f"{what}: {reason or status}: {message}", reason, status)
            return retrying.Transient(
                f"{what}: {reason or status}", lambda said: K8sError(said, reason, status)
            )
        if isinstance(exc, _connection_errors()):
            return retrying.Transient(f"{what}: {type(exc).__name__}: {exc}", K8sError)
        return exc

    return retrying.retry(lambda: fn(*args, **kwargs), classify=classify, deadline=deadline)


gone = missing_is_done(call)


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
    retrying.wait_until(
        condition, what, deadline=deadline, first=first, cap=POLL_CAP, timed_out=K8sError
    )
