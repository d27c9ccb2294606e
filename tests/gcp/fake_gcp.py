"""A small, strict stand-in for Compute Engine, IAM and Resource Manager over HTTP.

No emulator exists for these APIs, so this one is held to Google's own API
descriptions (tests/gcp/discovery.py): every request is routed by the official
discovery documents of compute.v1, iam.v1, cloudresourcemanager.v1 and cloudbilling.v1
(the price catalog, fake_billing.py), and one
whose method, path, query parameter or body field (at any depth) they do not
define gets HTTP 400 in Google's error shape. Answers are checked against the
method's response schema too, so the fake cannot drift from the API either.

The real clients talk to it unchanged: google-cloud-compute with
`transport="rest"`, `client_options={"api_endpoint": fake.endpoint}` and
anonymous credentials, and plain JSON over an authorized session for IAM and
Resource Manager. All three APIs are served from one address (their URL
templates do not overlap).

What it does beyond storing: compute mutations answer with a long-running
Operation (zonal, regional or global, `status: DONE`, served again by the
operations' `get` and `wait`); a regional managed instance group makes
instances from its template across the region's zones (tests/gcp/fake_mig.py).

For tests: `requests` keeps every accepted request (method id, path values,
query, body, Authorization header); `fail(method_id, ...)` makes the next call(s)
of a method fail, as an HTTP error or inside the operation (for rollback
tests); `reset()` empties everything.
"""

from __future__ import annotations

import http
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gcp.discovery import ApiError, Discovery

PROJECT = "test-project"
PROJECT_NUMBER = "123456789012"
COMPUTE = "https://www.googleapis.com/compute/v1/"
REGIONS = {
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
    "us-west1": ("us-west1-a", "us-west1-b", "us-west1-c"),
    "europe-west1": ("europe-west1-b", "europe-west1-c", "europe-west1-d"),
    "europe-north1": ("europe-north1-a", "europe-north1-b", "europe-north1-c"),
}
ZONES = {zone: region for region, zones in REGIONS.items() for zone in zones}

Handler = Callable[["FakeGcp", "Call"], Any]
HANDLERS: dict[str, Handler] = {}


def handles(method_id: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[method_id] = fn
        return fn

    return register


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(secrets.randbelow(10**18) + 10**18)


@dataclass
class Call:
    """One accepted request, as kept for audits."""

    method: str  # discovery method id
    path: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    auth: str  # the Authorization header ("" for anonymous)
    time: float = field(default_factory=time.time)

    def q(self, name: str, default: str = "") -> str:
        return (self.query.get(name) or [default])[0]


@dataclass
class Failure:
    code: int
    message: str
    times: int
    in_operation: bool  # fail inside a DONE operation instead of with an HTTP error


class FakeGcp:
    def __init__(self) -> None:
        self.discovery = Discovery(
            "compute.v1", "iam.v1", "cloudresourcemanager.v1", "cloudbilling.v1"
        )
        self.lock = threading.RLock()
        self.requests: list[Call] = []
        self.failures: dict[str, list[Failure]] = {}
        self.reset()
        from tests.gcp import (  # noqa: F401  (register handlers)
            fake_billing,
            fake_compute,
            fake_iam,
            fake_mig,
        )

        gcp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                code, answer = gcp.dispatch(
                    self.command, self.path, raw, self.headers.get("Authorization", "")
                )
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._tick_forever, daemon=True, name="fake-gcp")
        self.ticker.start()

    # --- lifecycle -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.failures.clear()
            self.operations: dict[str, dict[str, Any]] = {}
            self.templates: dict[str, dict[str, Any]] = {}
            self.firewalls: dict[str, dict[str, Any]] = {}
            self.networks = {"default": {"name": "default", "id": new_id()}}
            self.groups: dict[str, Any] = {}  # region/name -> fake_mig.Group
            self.instances: dict[str, dict[str, Any]] = {}  # zone/name -> Instance
            self.no_capacity: set[str] = set()  # zones that have no capacity
            self.service_accounts: dict[str, dict[str, Any]] = {}  # email -> ServiceAccount
            self.roles: dict[str, dict[str, Any]] = {}  # projects/P/roles/ID -> Role
            self.policy: dict[str, Any] = {"version": 1, "bindings": [], "etag": "BwYAAAAAAAA="}
            self.images = _images()
            self.tokens: dict[str, str] = {}  # machine access token -> service account email
            self.skus: list[dict[str, Any]] = []  # the billing catalog's Compute Engine SKUs

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.ticker.join(5)

    def _tick_forever(self) -> None:
        from tests.gcp.fake_mig import reconcile_all

        while not self.stopping.wait(0.1):
            with self.lock:
                reconcile_all(self)

    # --- tests' controls -------------------------------------------------------------

    def fail(
        self,
        method_id: str,
        *,
        code: int = 503,
        message: str = "injected failure",
        times: int = 1,
        in_operation: bool = False,
    ) -> None:
        if method_id not in HANDLERS:
            raise ValueError(f"the fake does not serve {method_id}")
        with self.lock:
            self.failures.setdefault(method_id, []).append(
                Failure(code, message, times, in_operation)
            )

    def preempt(self, instance: str) -> dict[str, Any]:
        """GCE takes a spot instance away (see fake_mig.preempt)."""
        from tests.gcp.fake_mig import preempt

        return preempt(self, instance)

    def calls(self, method_id: str) -> list[Call]:
        with self.lock:
            return [c for c in self.requests if c.method == method_id]

    # --- one request -----------------------------------------------------------------

    def dispatch(self, verb: str, target: str, raw: bytes, auth: str) -> tuple[int, Any]:
        from tests.gcp import fake_iam

        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        try:
            method, values = self.discovery.route(verb, parts.path)
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON payload received. {exc}", "parseError") from exc
            self.discovery.check(method, query, body, values)
            handler = HANDLERS.get(method.id)
            if handler is None:
                raise ApiError(501, f"the fake does not implement {method.id}", "notImplemented")
            call = Call(method.id, values, query, body, auth)
            returns = (method.spec.get("response") or {}).get("$ref")
            with self.lock:
                fake_iam.authorize(self, call)
                self.requests.append(call)
                failure = self._take_failure(method.id)
                if failure is not None and (returns != "Operation" or not failure.in_operation):
                    raise ApiError(failure.code, failure.message)
                if failure is not None:  # accepted, then the operation fails: nothing changes
                    answer = self._failed_operation(call, failure)
                else:
                    answer = handler(self, call)
            if returns:
                try:
                    self.discovery.validate(method.api, {"$ref": returns}, answer, returns, "")
                except ApiError as exc:  # the fake's own bug: say so loudly
                    raise ApiError(500, f"fake answered outside the schema: {exc.message}") from exc
            return 200, answer
        except ApiError as exc:
            return exc.code, exc.body()
        except Exception as exc:  # a bug in the fake: answer as Google would, and say what
            return 500, ApiError(500, f"fake error: {type(exc).__name__}: {exc}").body()

    def _take_failure(self, method_id: str) -> Failure | None:
        queue = self.failures.get(method_id) or []
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _failed_operation(self, call: Call, failure: Failure) -> dict[str, Any]:
        zone, region = call.path.get("zone", ""), call.path.get("region", "")
        op = self.operation(call.method.rsplit(".", 1)[1], "", zone=zone, region=region)
        op["error"] = {"errors": [{"code": "INJECTED", "message": failure.message}]}
        op["httpErrorStatusCode"] = failure.code
        op["httpErrorMessage"] = http.HTTPStatus(failure.code).phrase.upper()
        self.operations[op["selfLink"]] = op
        return op

    # --- shared helpers for handlers ---------------------------------------------------

    def project(self, call: Call) -> str:
        project = call.path.get("project") or PROJECT
        if project != PROJECT:
            raise ApiError(404, f"The resource 'projects/{project}' was not found")
        return project

    def operation(
        self,
        op_type: str,
        target: str,
        *,
        zone: str = "",
        region: str = "",
        user: str = "",
        target_id: str = "",
    ) -> dict[str, Any]:
        """A finished operation for a mutation, stored for the operations' get and wait
        (and the lists); `target_id` is the id of the resource it acted on."""
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}"
        if zone:
            scope = f"projects/{PROJECT}/zones/{zone}"
        elif region:
            scope = f"projects/{PROJECT}/regions/{region}"
        else:
            scope = f"projects/{PROJECT}/global"
        stamp = now_rfc3339()
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": new_id(),
            "name": name,
            "operationType": op_type,
            "targetLink": target,
            "targetId": target_id or new_id(),
            "status": "DONE",
            "progress": 100,
            "insertTime": stamp,
            "startTime": stamp,
            "endTime": stamp,
            "user": user or "caller@test-project.iam.gserviceaccount.com",
            "selfLink": f"{COMPUTE}{scope}/operations/{name}",
        }
        if zone:
            op["zone"] = f"{COMPUTE}projects/{PROJECT}/zones/{zone}"
        if region:
            op["region"] = f"{COMPUTE}projects/{PROJECT}/regions/{region}"
        self.operations[op["selfLink"]] = op
        return op


def _images() -> dict[str, list[dict[str, Any]]]:
    """project/family -> images, oldest first (getFromFamily answers the newest)."""
    rows = [
        ("ubuntu-os-cloud", "ubuntu-2404-lts-amd64", "ubuntu-2404-noble-amd64-v20250110", 10),
        ("ubuntu-os-cloud", "ubuntu-2404-lts-amd64", "ubuntu-2404-noble-amd64-v20250301", 10),
        (
            "deeplearning-platform-release",
            "common-cu128-ubuntu-2204-nvidia-570",
            "common-cu128-ubuntu-2204-nvidia-570-v20250301",
            50,
        ),
    ]
    out: dict[str, list[dict[str, Any]]] = {}
    for project, family, name, size in rows:
        out.setdefault(f"{project}/{family}", []).append(
            {
                "kind": "compute#image",
                "id": new_id(),
                "name": name,
                "family": family,
                "status": "READY",
                "diskSizeGb": str(size),
                "selfLink": f"{COMPUTE}projects/{project}/global/images/{name}",
                "creationTimestamp": "2025-03-01T00:00:00.000-08:00",
            }
        )
    return out
