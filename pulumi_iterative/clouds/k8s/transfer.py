"""The workstation's way into a task's PersistentVolumeClaim: a short-lived transfer pod.

The bucket of a PVC task is the claim itself; the task's pods mount it. The
workstation (upload, status, logs, pull) reaches it through the cluster only:

    rclone (S3 client) -> 127.0.0.1:<port>/<token>/...        this module's forwarder
      -> https://<api server>/api/v1/namespaces/<ns>/pods/<pod>:8080/proxy/<token>/...
      -> the transfer pod: `rclone serve s3` over the claim, on the pod's own address

- No port is opened outside the cluster and no `kubectl` is needed: the API server's
  pod proxy carries the bytes, authenticated with the user's own kubeconfig
  credentials (the forwarder adds them per request, exactly as the official client
  would: bearer token, exec plugin, client certificate and CA all come from its
  configuration). The forwarder listens on loopback only, for the session.
- S3 rather than WebDAV because the pod proxy passes only GET, POST, PUT, PATCH,
  DELETE, HEAD and OPTIONS (WebDAV needs PROPFIND and MKCOL).
- The transfer pod serves anonymously (the proxy strips the caller's Authorization
  header, so no S3 signature could survive it), behind a random per-session base URL:
  a request must know the token, which only the session and whoever may read the
  pod's spec in that namespace know. It mounts the claim and nothing else, has no
  service account token, and `activeDeadlineSeconds` ends it if a session is never
  closed. Sessions are independent (a generated name each): two at once do not clash.
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
from typing import Any

from ...storage import Remote
from .api import Kube, call, gone, wait_until
from .names import BUCKET_DIR, POD_HOME, ROLE_LABEL, TRANSFER_PORT, Names
from .resources import STRICT

log = logging.getLogger(__name__)

RCLONE_IMAGE = "rclone/rclone:1.68"
SESSION_DEADLINE = 6 * 3600  # the pod ends itself after this, whatever happens
READY_DEADLINE = 300.0
SERVE_DIR = "volume"  # the claim, mounted where the job's pods mount it too
# Hop-by-hop headers stay here; Host and Authorization are the forwarder's own to set.
NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "authorization"}
)
SKIP_BACK = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def transfer_pod_body(names: Names, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{names.transfer_pod}-", "labels": names.labels("transfer")},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "activeDeadlineSeconds": SESSION_DEADLINE,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "rclone",
                    "image": RCLONE_IMAGE,
                    # the bucket folder first (a fresh claim is empty), then serve its parent
                    "command": [
                        "/bin/sh",
                        "-c",
                        f"mkdir -p {SERVE_DIR}/{BUCKET_DIR} && exec rclone serve s3 {SERVE_DIR} "
                        f"--addr $(POD_IP):{TRANSFER_PORT} --baseurl /{token} --config /dev/null",
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
                    "volumeMounts": [{"name": "volume", "mountPath": f"{POD_HOME}/{SERVE_DIR}"}],
                }
            ],
            "volumes": [{"name": "volume", "persistentVolumeClaim": {"claimName": names.claim}}],
        },
    }


def session_remote(endpoint: str) -> Remote:
    """The rclone remote of one session (never stored: the endpoint is per session)."""
    return Remote(
        f":s3:{BUCKET_DIR}",
        tuple(
            sorted(
                {
                    "RCLONE_S3_PROVIDER": "Other",
                    "RCLONE_S3_ENDPOINT": endpoint,
                    "RCLONE_S3_ENV_AUTH": "false",
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
    kube: Kube, pod: str, method: str, path: str, body: bytes, headers: dict[str, str]
) -> Any:
    """One request to the transfer pod through the API server's pod proxy, with the
    client's own TLS settings (CA, client certificate) and credentials; not preloaded."""
    base = kube.client.configuration.host.rstrip("/")
    url = f"{base}/api/v1/namespaces/{kube.namespace}/pods/{pod}:{TRANSFER_PORT}/proxy{path}"
    return kube.client.rest_client.pool_manager.request(
        method,
        url,
        body=body if body or method in ("PUT", "POST") else None,
        headers={**headers, **_auth_headers(kube)},
        preload_content=False,
        redirect=False,
        retries=False,
        timeout=300.0,
    )


class _Forwarder:
    """127.0.0.1:<port>/<path> -> the API server's proxy of the transfer pod, with the
    user's credentials added per request by the official client's configuration."""

    def __init__(self, kube: Kube, pod: str) -> None:
        self.kube, self.pod = kube, pod
        handler = type("Handler", (_ForwardHandler,), {"forwarder": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="k8s-transfer"
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        return proxy_request(self.kube, self.pod, method, path, body, headers)

    def __enter__(self) -> _Forwarder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _ForwardHandler(http.server.BaseHTTPRequestHandler):
    forwarder: _Forwarder
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

    def _relay(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            answer = self.forwarder.forward(self.command, self.path, body, headers)
        except Exception as exc:  # the client sees a 502 and retries, as with any S3 hiccup
            log.warning("transfer proxy: %s", exc)
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
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


def _token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def start_transfer_pod(kube: Kube, names: Names, token: str) -> str:
    made = call(
        kube.core.create_namespaced_pod, kube.namespace, transfer_pod_body(names, token), **STRICT
    )
    return str(made.metadata.name)


def _answering(kube: Kube, pod: str, token: str) -> bool:
    found = call(kube.core.read_namespaced_pod, pod, kube.namespace)
    phase = found.status and found.status.phase
    if phase in ("Failed", "Succeeded"):
        from .api import K8sError

        raise K8sError(f"transfer pod {pod} ended ({phase}) before serving; see its events")
    if phase != "Running":
        return False
    try:
        answer = proxy_request(kube, pod, "GET", f"/{token}/", b"", {})
    except Exception:  # not reachable yet: the next poll asks again
        return False
    try:
        answer.read()  # a connection goes back to the pool only once drained
        return int(answer.status) == 200
    finally:
        answer.release_conn()


def remove_transfer_pods(kube: Kube, names: Names) -> None:
    """Every transfer pod of the task (sessions that were never closed included)."""
    found = call(
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=f"{names.selector},{ROLE_LABEL}=transfer",
    )
    for pod in found.items or []:
        gone(
            kube.core.delete_namespaced_pod,
            pod.metadata.name,
            kube.namespace,
            grace_period_seconds=0,
        )


@contextlib.contextmanager
def open_bucket(kube: Kube, names: Names) -> Iterator[Remote]:
    """A session: the transfer pod up and answering, a loopback forwarder to it, and
    the rclone remote to use meanwhile; on exit the forwarder stops and the pod goes."""
    token = _token()
    started = time.monotonic()
    pod = start_transfer_pod(kube, names, token)
    try:
        wait_until(
            lambda: _answering(kube, pod, token),
            f"transfer pod {pod} to serve the task's volume",
            deadline=READY_DEADLINE,
        )
        log.info("transfer pod %s ready in %.1fs", pod, time.monotonic() - started)
        with _Forwarder(kube, pod) as forwarder:
            yield session_remote(f"{forwarder.url}/{urllib.parse.quote(token)}")
    finally:
        gone(kube.core.delete_namespaced_pod, pod, kube.namespace, grace_period_seconds=0)


__all__ = [
    "BUCKET_DIR",
    "open_bucket",
    "remove_transfer_pods",
    "session_remote",
    "transfer_pod_body",
]
