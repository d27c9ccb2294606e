"""A small, strict Azure Resource Manager on loopback, behind the real azure-mgmt clients.

No ARM emulator exists, so this is one: a threaded HTTP server that speaks ARM's
wire protocol closely enough for the real SDK clients, and refuses what ARM refuses:

- every request needs `api-version`, and it must be the version the fake implements
  for that resource type (`MissingApiVersionParameter`, `InvalidApiVersionParameter`);
- every PUT/PATCH/POST body is checked against the SDK's own model class
  (`arm_schema.check_body`): an unknown, read-only or mistyped property, or a missing
  required one, is HTTP 400 `InvalidRequestContent` in ARM's error shape
  `{"error": {"code", "message"}}`;
- a bearer token is required, and only tokens handed out by the test (`grant`) are
  valid (`InvalidAuthenticationToken`); a principal other than the caller may only
  do what its role assignments allow (`AuthorizationFailed`);
- long-running operations answer like ARM: 201/202 with `Azure-AsyncOperation`
  (and/or `Location`) headers, an operation resource that reports `InProgress`
  then `Succeeded`/`Failed`, and `Retry-After`.

It simulates (fake_scale_set.py) what the task's machines depend on: a Flexible scale set creates
VMs (with their NIC, OS disk and public IP, removed with the VM per `deleteOption`)
for its capacity, honours capacity changes, instance deletes and scale set deletes;
`evict` takes a spot VM away (and, with spot restore on, brings a new one);
`refuse_capacity` makes allocations fail; an autoscale setting's fixed-date
profile sets the capacity when its start passes (`tick`). What happens is
written to an activity log that the monitor client reads.

Every request is kept (`requests`) for audits, and `fail` makes a chosen
operation fail, for rollback tests. Listeners (`on_vm`) let the machine simulator
boot and stop processes as VMs come and go.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.azure.arm_ids import ArmError, now, split_id, type_of
from tests.azure.arm_schema import check_body
from tests.azure.fake_scale_set import ScaleSetSimulation, Vm

SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
TENANT = "00000000-0000-0000-0000-0000000ten0"
CALLER = "caller"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def _models(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    return load


@dataclass(frozen=True)
class Kind:
    """A resource type the fake implements: its API version and the SDK's models."""

    api_version: str
    put_model: Callable[[], type] | None = None
    patch_model: Callable[[], type] | None = None
    put_lro: str = ""  # "": synchronous; "async": Azure-AsyncOperation; "location": Location
    delete_lro: bool = True
    tracked: bool = True  # has a location


COMPUTE = "azure.mgmt.compute.models"
NETWORK = "azure.mgmt.network.models"
STORAGE = "azure.mgmt.storage.models"
RESOURCES = "azure.mgmt.resource.resources.models"
MSI = "azure.mgmt.msi.models"
AUTH = "azure.mgmt.authorization.v2022_04_01.models"
MONITOR = "azure.mgmt.monitor.models"

KINDS: dict[str, Kind] = {
    "resourcegroups": Kind("2025-04-01", _models(RESOURCES, "ResourceGroup"), None, ""),
    "microsoft.compute/virtualmachinescalesets": Kind(
        "2026-04-01",
        _models(COMPUTE, "VirtualMachineScaleSet"),
        _models(COMPUTE, "VirtualMachineScaleSetUpdate"),
        "async",
    ),
    "microsoft.compute/virtualmachines": Kind("2026-04-01", None, None, "async"),
    "microsoft.compute/disks": Kind("2026-04-01"),
    "microsoft.network/virtualnetworks": Kind(
        "2026-03-01", _models(NETWORK, "VirtualNetwork"), None, "async"
    ),
    "microsoft.network/virtualnetworks/subnets": Kind(
        "2026-03-01", _models(NETWORK, "Subnet"), None, "async", tracked=False
    ),
    "microsoft.network/networksecuritygroups": Kind(
        "2026-03-01", _models(NETWORK, "NetworkSecurityGroup"), None, "async"
    ),
    "microsoft.network/networkinterfaces": Kind("2026-03-01"),
    "microsoft.network/publicipaddresses": Kind("2026-03-01"),
    "microsoft.managedidentity/userassignedidentities": Kind(
        "2024-11-30", _models(MSI, "Identity"), None, "", delete_lro=False
    ),
    "microsoft.storage/storageaccounts": Kind(
        "2026-09-01",
        _models(STORAGE, "StorageAccountCreateParameters"),
        None,
        "location",
        delete_lro=False,
    ),
    "microsoft.storage/storageaccounts/blobservices/containers": Kind(
        "2026-09-01", _models(STORAGE, "BlobContainer"), None, "", False, tracked=False
    ),
    "microsoft.authorization/roleassignments": Kind(
        "2022-04-01",
        _models(AUTH, "RoleAssignmentCreateParameters"),
        None,
        "",
        delete_lro=False,
        tracked=False,
    ),
    "microsoft.authorization/roledefinitions": Kind(
        "2022-04-01", _models(AUTH, "RoleDefinition"), None, "", delete_lro=False, tracked=False
    ),
    "microsoft.insights/autoscalesettings": Kind(
        "2022-10-01", _models(MONITOR, "AutoscaleSettingResource"), None, "", delete_lro=False
    ),
}
# POST actions: (type, action) -> (api version, request model, long-running)
ACTIONS: dict[tuple[str, str], tuple[str, Callable[[], type] | None]] = {
    ("microsoft.compute/virtualmachinescalesets", "delete"): (
        "2026-04-01",
        _models(COMPUTE, "VirtualMachineScaleSetVMInstanceRequiredIDs"),
    ),
    ("microsoft.compute/virtualmachinescalesets", "deallocate"): (
        "2026-04-01",
        _models(COMPUTE, "VirtualMachineScaleSetVMInstanceIDs"),
    ),
    ("microsoft.storage/storageaccounts", "listkeys"): ("2026-09-01", None),
}
ACTIVITY_LOG_API = "2015-04-01"
# Built-in roles the backend refers to: id -> (name, control-plane actions).
BUILTIN_ROLES = {
    STORAGE_BLOB_DATA_CONTRIBUTOR: (
        "Storage Blob Data Contributor",
        [
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
    ),
}


@dataclass
class Request:
    """One request as received: kept for audits (bodies as parsed JSON)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0
    principal: str = ""
    actions: list[str] = field(default_factory=list)  # the RBAC actions ARM checks for it


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: str
    message: str
    times: int
    in_operation: bool  # accept the request, then fail its long-running operation


@dataclass
class Operation:
    status: str  # InProgress | Succeeded | Failed
    polls_left: int
    error: dict[str, str] | None = None
    resource_path: str = ""  # what a Location poll answers with when done ("" = nothing)


def _lower(s: str) -> str:
    return s.lower()


class FakeArm(ScaleSetSimulation):
    def __init__(self, *, polls: int = 0, retry_after: int = 1) -> None:
        # polls: InProgress answers before an operation completes. 0 = the resource
        # provider finishes at once and answers without polling headers (ARM allows
        # it, and the SDK then does not wait); >= 1 = a real long-running operation.
        self.polls = polls
        self.retry_after = str(retry_after)  # whole seconds, as ARM sends (the SDK parses int)
        self.lock = threading.RLock()
        self.resources: dict[str, dict[str, Any]] = {}  # lower id -> stored resource JSON
        self.models: dict[str, Any] = {}  # lower id -> the body as the client sent it
        self.operations: dict[str, Operation] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.tokens: dict[str, str] = {}  # bearer token -> principal id
        self.activity: list[dict[str, Any]] = []
        self.vms: dict[str, Vm] = {}  # lower VM id -> Vm
        self.owned: dict[str, list[str]] = {}  # lower VM id -> resources deleted with it
        self.addresses = 0  # public addresses handed out
        self.listeners: list[Callable[[str, Vm], None]] = []
        self.capacity_refused: dict[str, int] = {}  # vm size -> allocations to refuse
        self.server = self._serve()

    # --- the test's controls --------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def grant(self, principal: str = CALLER) -> str:
        """A new bearer token for principal (the caller may do anything)."""
        token = "eyJ" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = principal
        return token

    def fail(
        self,
        method: str,
        pattern: str,
        *,
        status: int = 500,
        code: str = "InternalServerError",
        message: str = "injected failure",
        times: int = 1,
        in_operation: bool = False,
    ) -> None:
        """The next `times` requests of method to a path matching pattern fail."""
        with self.lock:
            self.faults.append(
                Fault(
                    method.upper(),
                    re.compile(pattern, re.I),
                    status,
                    code,
                    message,
                    times,
                    in_operation,
                )
            )

    def find(self, kind: str) -> list[dict[str, Any]]:
        """Stored resources of a type ("Microsoft.Compute/virtualMachineScaleSets")."""
        with self.lock:
            return [
                copy.deepcopy(r)
                for r in self.resources.values()
                if r.get("type", "").lower() == kind.lower()
            ]

    def model(self, resource_id: str) -> Any:
        """The body the client sent for a resource (what it stored in the cloud)."""
        with self.lock:
            return copy.deepcopy(self.models.get(resource_id.lower()))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- HTTP -----------------------------------------------------------------------------

    def _serve(self) -> ThreadingHTTPServer:
        arm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _do(self) -> None:
                arm._handle(self)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = do_HEAD = _do

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True, name="fake-arm").start()
        return server

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = unquote(url.path)
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        record = Request(http.command, path, query, None)
        headers: dict[str, str] = {}
        try:
            record.body = json.loads(raw) if raw else None
        except ValueError:
            record.body = raw.decode(errors="replace")
        try:
            record.principal = self._principal(http.headers.get("Authorization", ""))
            status, body, headers = self._route(http.command, path, query, record)
        except ArmError as exc:
            status, body = exc.status, {"error": {"code": exc.code, "message": exc.message}}
        record.status = status
        with self.lock:
            self.requests.append(record)
        data = b"" if body is None else json.dumps(body).encode()
        http.send_response(status)
        for name, value in headers.items():
            http.send_header(name, value)
        http.send_header("x-ms-request-id", str(uuid.uuid4()))
        if data:
            http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        if http.command != "HEAD":
            http.wfile.write(data)

    def _principal(self, header: str) -> str:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        with self.lock:
            principal = self.tokens.get(token)
        if principal is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        return principal

    def _route(
        self, method: str, path: str, query: dict[str, str], record: Request
    ) -> tuple[int, Any, dict[str, str]]:
        if "/operations/" in path.lower() and "/locations/" in path.lower():
            return self._operation(path, query)
        if path.lower().startswith("/providers/microsoft.insights/eventtypes") or (
            "/providers/microsoft.insights/eventtypes/management/values" in path.lower()
        ):
            self._api_version(query, ACTIVITY_LOG_API)
            record.actions = ["Microsoft.Insights/eventtypes/values/read"]
            return 200, {"value": self._activity(query.get("$filter", ""))}, {}
        scope, namespace, type_path, pairs = split_id(path)
        kind_key, name, action = self._kind_key(scope, namespace, type_path, pairs, method)
        if action:
            version, model = ACTIONS.get((kind_key, action.lower()), ("", None))
            if not version:
                raise ArmError(
                    404,
                    "InvalidResourceType",
                    f"The resource type '{type_path}' has no action '{action}'.",
                )
            self._api_version(query, version)
            resource_id = path[: -(len(action) + 1)]
            record.actions = [f"{type_of(resource_id)}/{action}/action"]
            return self._action(kind_key, action.lower(), resource_id, model, record)
        kind = KINDS.get(kind_key)
        if kind is None:
            raise ArmError(
                400,
                "InvalidResourceType",
                f"The resource type '{type_path or kind_key}' could not be found in "
                f"the namespace '{namespace}' for api version "
                f"'{query.get('api-version', '')}'.",
            )
        self._api_version(query, kind.api_version)
        record.actions = _actions(method, path, record.body)
        self._authorize(record.principal, method, kind_key, path)
        self._inject(method, path)
        if not name:  # a collection
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")
            return 200, {"value": self._list(kind_key, path, query)}, {}
        if method in ("GET", "HEAD"):
            return self._get(path, query)
        if method == "PUT":
            return self._put(kind_key, kind, path, record, query)
        if method == "PATCH":
            return self._patch(kind_key, kind, path, record)
        if method == "DELETE":
            return self._delete(kind_key, kind, path)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not allowed here.")

    def _kind_key(
        self,
        scope: str,
        namespace: str,
        type_path: str,
        pairs: list[tuple[str, str]],
        method: str,
    ) -> tuple[str, str, str]:
        """(lower kind key, resource name or "", POST action or "")."""
        if not namespace:
            parts = scope.strip("/").split("/")
            if len(parts) >= 3 and parts[2].lower() == "resourcegroups":
                return "resourcegroups", parts[3] if len(parts) > 3 else "", ""
            raise ArmError(404, "NotFound", f"No route for {scope}.")
        action = ""
        if method == "POST" and pairs and pairs[-1][1] == "" and len(pairs) > 1:
            action = pairs[-1][0]
            pairs = pairs[:-1]
            type_path = "/".join(t for t, _ in pairs)
        # blobServices/default/containers/x: "default" is the blob service's name
        key = f"{namespace}/{type_path}".lower()
        name = pairs[-1][1] if pairs else ""
        return key, name, action

    def _api_version(self, query: dict[str, str], expected: str) -> None:
        given = query.get("api-version")
        if not given:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if given != expected:
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{given}' is invalid. The supported versions are '{expected}'.",
            )

    def _inject(self, method: str, path: str, *, operation: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    if fault.in_operation != operation:
                        continue
                    fault.times -= 1
                    if operation:
                        return fault
                    raise ArmError(fault.status, fault.code, fault.message)
        return None

    # --- authorization of principals other than the caller ---------------------------

    def _authorize(self, principal: str, method: str, kind_key: str, path: str) -> None:
        if principal == CALLER:
            return
        verb = {
            "GET": "read",
            "HEAD": "read",
            "PUT": "write",
            "PATCH": "write",
            "DELETE": "delete",
        }.get(method, "action")
        self._check_action(principal, f"{kind_key}/{verb}", path)

    def _check_action(self, principal: str, action: str, path: str) -> None:
        with self.lock:
            for assignment in self.resources.values():
                if assignment["type"].lower() != "microsoft.authorization/roleassignments":
                    continue
                props = assignment["properties"]
                if props["principalId"] != principal:
                    continue
                if not path.lower().startswith(props["scope"].lower()):
                    continue
                if any(_matches(a, action) for a in self._role_actions(props["roleDefinitionId"])):
                    return
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{principal}' does not have authorization to perform action "
            f"'{action}' over scope '{path}' or the scope is invalid.",
        )

    def _role_actions(self, role_id: str) -> list[str]:
        guid = role_id.rstrip("/").rsplit("/", 1)[-1].lower()
        if guid in BUILTIN_ROLES:
            return BUILTIN_ROLES[guid][1]
        for r in self.resources.values():
            if (
                r["type"].lower() == "microsoft.authorization/roledefinitions"
                and r["name"].lower() == guid
            ):
                return [
                    a for p in r["properties"].get("permissions", []) for a in p.get("actions", [])
                ]
        return []

    # --- the resource store -----------------------------------------------------------

    def _get(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            found = self.resources.get(path.lower())
            if found is None:
                raise self._not_found(path)
            answer = copy.deepcopy(found)
        if found["type"].lower() == "microsoft.compute/virtualmachines" and (
            query.get("$expand") == "instanceView"
        ):
            answer["properties"]["instanceView"] = self._instance_view(found)
        return 200, answer, {}

    def _not_found(self, path: str) -> ArmError:
        scope, namespace, _, pairs = split_id(path)
        group = re.match(r"(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+", path)
        if group and group.group(0).lower() not in self.resources and (namespace or pairs):
            return ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{group.group(0).rsplit('/', 1)[1]}' could not be found.",
            )
        if not namespace:
            return ArmError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{scope.rsplit('/', 1)[1]}' could not be found.",
            )
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{path.split('/providers/', 1)[-1]}' was not found.",
        )

    def _list(self, kind_key: str, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        prefix = path.lower().rsplit("/providers/", 1)[0] if "/providers/" in path.lower() else ""
        out = []
        with self.lock:
            for rid, r in self.resources.items():
                if r["type"].lower() != kind_key or not rid.startswith(prefix):
                    continue
                item = copy.deepcopy(r)
                if kind_key == "microsoft.compute/virtualmachines" and (
                    query.get("$expand") == "instanceView" or query.get("statusOnly") == "true"
                ):
                    item["properties"]["instanceView"] = self._instance_view(r)
                out.append(item)
        return out

    def _check(self, model: Callable[[], type] | None, body: Any, *, create: bool) -> None:
        if model is None:
            if body:
                raise ArmError(400, "InvalidRequestContent", "This request takes no body.")
            return
        problems = check_body(model(), body, create=create)
        if problems:
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: "
                + "; ".join(problems),
            )

    def _parent_exists(self, path: str) -> None:
        group = re.match(r"(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+", path)
        inside = group and group.group(0).lower() != path.lower()
        if inside and group.group(0).lower() not in self.resources:  # type: ignore[union-attr]
            raise self._not_found(path)

    def _put(
        self, kind_key: str, kind: Kind, path: str, record: Request, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        body = record.body
        if kind.put_model is None:
            raise ArmError(405, "MethodNotAllowed", f"PUT is not supported for {kind_key}.")
        self._check(kind.put_model, body, create=True)
        with self.lock:
            self._parent_exists(path)
            existed = path.lower() in self.resources
            resource = self._materialize(kind_key, path, body, existed)
            fault = self._inject("PUT", path, operation=True)
            self.resources[path.lower()] = resource
            self.models[path.lower()] = copy.deepcopy(body)
            self._log(resource["id"], f"{type_of(path)}/write", "Succeeded", "")
        then: Callable[[], None] | None = None
        if kind_key == "microsoft.compute/virtualmachinescalesets":
            then = lambda: self._reconcile(path)  # noqa: E731
        if kind_key == "microsoft.storage/storageaccounts/blobservices/containers":
            self._container_created(path)
        status = 200 if existed else 201
        if not kind.put_lro:
            if then:
                then()
            return status, copy.deepcopy(resource), {}
        return self._start_operation(path, resource, kind.put_lro, fault, then, status)

    def _patch(
        self, kind_key: str, kind: Kind, path: str, record: Request
    ) -> tuple[int, Any, dict[str, str]]:
        if kind.patch_model is None:
            raise ArmError(405, "MethodNotAllowed", f"PATCH is not supported for {kind_key}.")
        self._check(kind.patch_model, record.body, create=False)
        with self.lock:
            found = self.resources.get(path.lower())
            if found is None:
                raise self._not_found(path)
            _merge(found, record.body or {})
            fault = self._inject("PATCH", path, operation=True)
            self._log(found["id"], f"{type_of(path)}/write", "Succeeded", "")
        then = (lambda: self._reconcile(path)) if "virtualmachinescalesets" in kind_key else None
        return self._start_operation(path, found, kind.put_lro or "async", fault, then, 200)

    def _delete(self, kind_key: str, kind: Kind, path: str) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            found = self.resources.get(path.lower())
            if found is None:
                if kind_key == "resourcegroups":
                    raise self._not_found(path)
                return 204, None, {}  # ARM: deleting what is not there is 204
            fault = self._inject("DELETE", path, operation=True)
        if not kind.delete_lro:
            self._remove(path)
            return 200, None, {}
        return self._start_operation(path, None, "delete", fault, lambda: self._remove(path), 202)

    def _remove(self, path: str) -> None:
        """Delete a resource and what ARM deletes with it."""
        with self.lock:
            found = self.resources.get(path.lower())
            if found is None:
                return
            kind_key = found["type"].lower()
            if kind_key == "resourcegroups":
                # Custom role definitions are directory objects: they outlive the group.
                for rid in sorted(self.resources, key=len, reverse=True):
                    kind = self.resources.get(rid, {}).get("type", "").lower()
                    if rid.startswith(path.lower() + "/") and (
                        kind != "microsoft.authorization/roledefinitions"
                    ):
                        self._remove(rid)
            elif kind_key == "microsoft.compute/virtualmachinescalesets":
                for vm in [v for v in self.vms.values() if v.scale_set.lower() == path.lower()]:
                    self._delete_vm(vm.id)
            elif kind_key == "microsoft.compute/virtualmachines":
                self._delete_vm(found["id"])
                return
            elif kind_key == "microsoft.storage/storageaccounts":
                for rid in [r for r in self.resources if r.startswith(path.lower() + "/")]:
                    self._remove(rid)
            elif kind_key == "microsoft.storage/storageaccounts/blobservices/containers":
                self._container_deleted(path)
            # extension resources (role assignments) scoped at or under what goes
            for rid in [
                r
                for r, v in self.resources.items()
                if v["type"].lower() == "microsoft.authorization/roleassignments"
                and v["properties"]["scope"].lower().startswith(path.lower())
            ]:
                self.resources.pop(rid, None)
            self.resources.pop(path.lower(), None)
            self.models.pop(path.lower(), None)
            self._log(found["id"], f"{found['type']}/delete", "Succeeded", "")

    # --- long-running operations --------------------------------------------------------

    def _start_operation(
        self,
        path: str,
        resource: dict[str, Any] | None,
        style: str,
        fault: Fault | None,
        then: Callable[[], None] | None,
        status: int,
    ) -> tuple[int, Any, dict[str, str]]:
        op_id = str(uuid.uuid4())
        error = {"code": fault.code, "message": fault.message} if fault else None
        if self.polls == 0 and error is None:  # finished synchronously: no polling headers
            if then is not None:
                then()
            if resource is None:
                return 200, None, {}  # a delete (or action) done at once
            with self.lock:
                final = copy.deepcopy(self.resources.get(path.lower(), resource))
            created = status == 201 and style != "location"  # storage answers 200 or 202
            return (201 if created else 200), final, {}
        if error is None and then is not None:
            then()  # the change happens now; the operation reports it done after polls
        elif error is not None and resource is not None:
            with self.lock:
                stored = self.resources.get(path.lower())
                if stored is not None:
                    stored.setdefault("properties", {})["provisioningState"] = "Failed"
        with self.lock:  # a failing operation always runs long: it fails at its end
            self.operations[op_id] = Operation(
                "InProgress",
                max(self.polls - 1, 0) if error else self.polls,
                error,
                path if style == "location" else "",
            )
        location = "eastus"
        if resource is not None:
            location = str(resource.get("location") or location)
        namespace = split_id(path)[1] or "Microsoft.Resources"
        version = self._version_for(path)
        op_url = (
            f"{self.endpoint}/subscriptions/{SUBSCRIPTION}/providers/{namespace}/locations/"
            f"{location}/operations/{op_id}?api-version={version}"
        )
        headers = {"Retry-After": self.retry_after}
        if style == "async":
            headers["Azure-AsyncOperation"] = op_url
            body = copy.deepcopy(resource)
            if body is not None:
                body.setdefault("properties", {})["provisioningState"] = (
                    "Creating" if status == 201 else "Updating"
                )
            return status, body, headers
        if style == "location":
            headers["Location"] = op_url + "&kind=location"
            return 202, None, headers
        headers["Azure-AsyncOperation"] = op_url
        headers["Location"] = op_url + "&kind=location"
        return 202, None, headers

    def _version_for(self, path: str) -> str:
        _scope, namespace, type_path, _pairs = split_id(path)
        if not namespace:
            return KINDS["resourcegroups"].api_version
        kind = KINDS.get(f"{namespace}/{type_path}".lower())
        return kind.api_version if kind else "2026-04-01"

    def _operation(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        op_id = path.rstrip("/").rsplit("/", 1)[-1]
        with self.lock:
            op = self.operations.get(op_id)
            if op is None:
                raise ArmError(404, "OperationNotFound", f"Operation {op_id} not found.")
            if op.status == "InProgress":
                if op.polls_left > 0:
                    op.polls_left -= 1
                else:
                    op.status = "Failed" if op.error else "Succeeded"
        headers = {"Retry-After": self.retry_after}
        if query.get("kind") == "location":
            if op.status == "InProgress":
                return (
                    202,
                    None,
                    {
                        **headers,
                        "Location": self.endpoint
                        + path
                        + "?"
                        + "&".join(f"{k}={v}" for k, v in query.items()),
                    },
                )
            if op.status == "Failed":
                raise ArmError(
                    500,
                    op.error["code"] if op.error else "Failed",
                    op.error["message"] if op.error else "",
                )
            with self.lock:
                resource = copy.deepcopy(self.resources.get(op.resource_path.lower()))
            return (200, resource, {}) if resource is not None else (204, None, {})
        body: dict[str, Any] = {"id": path, "name": op_id, "status": op.status}
        if op.status != "InProgress":
            body["endTime"] = now()
        if op.status == "Failed" and op.error:
            body["error"] = op.error
        return 200, body, headers

    # --- what each type adds when stored ------------------------------------------------

    def _materialize(
        self, kind_key: str, path: str, body: dict[str, Any], existed: bool
    ) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        name = parts[-1]
        old = self.resources.get(path.lower()) if existed else None
        resource: dict[str, Any] = copy.deepcopy(body or {})
        type_name = (
            "Microsoft.Resources/resourceGroups"
            if kind_key == "resourcegroups"
            else (type_of(path))
        )
        resource.update({"id": path, "name": name, "type": type_name})
        props = resource.setdefault("properties", {})
        props["provisioningState"] = "Succeeded"
        if kind_key == "microsoft.managedidentity/userassignedidentities":
            keep = (old or {}).get("properties", {})
            props.update(
                {
                    "tenantId": TENANT,
                    "principalId": keep.get("principalId") or str(uuid.uuid4()),
                    "clientId": keep.get("clientId") or str(uuid.uuid4()),
                }
            )
            props.pop("provisioningState")
        elif kind_key == "microsoft.storage/storageaccounts":
            props.update(
                {
                    "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"},
                    "creationTime": now(),
                }
            )
        elif kind_key == "microsoft.compute/virtualmachinescalesets":
            props["uniqueId"] = (old or {}).get("properties", {}).get("uniqueId") or str(
                uuid.uuid4()
            )
            profile = props.get("virtualMachineProfile") or {}
            (profile.get("osProfile") or {}).pop("customData", None)  # write-only in ARM
        elif kind_key == "microsoft.authorization/roleassignments":
            scope = split_id(path)[0]
            props["scope"] = scope
            props.pop("provisioningState")
            with self.lock:
                for r in self.resources.values():
                    if (
                        r["type"].lower() == kind_key
                        and r["id"].lower() != path.lower()
                        and r["properties"]["scope"].lower() == scope.lower()
                        and r["properties"]["principalId"] == props.get("principalId")
                        and r["properties"]["roleDefinitionId"].lower()
                        == str(props.get("roleDefinitionId")).lower()
                    ):
                        raise ArmError(
                            409, "RoleAssignmentExists", "The role assignment already exists."
                        )
                if not any(
                    r["type"].lower() == "microsoft.managedidentity/userassignedidentities"
                    and r["properties"].get("principalId") == props.get("principalId")
                    for r in self.resources.values()
                ):
                    raise ArmError(
                        400,
                        "PrincipalNotFound",
                        f"Principal {props.get('principalId')} does not exist in the "
                        f"directory {TENANT}.",
                    )
        elif kind_key == "microsoft.authorization/roledefinitions":
            props.pop("provisioningState")
            props.setdefault("type", "CustomRole")
        elif kind_key == "microsoft.network/networksecuritygroups":
            props.setdefault("securityRules", [])
        elif kind_key == "microsoft.insights/autoscalesettings":
            props.pop("provisioningState")
        return resource

    # --- blob containers mirror into the blob emulator (if one is attached) --------------

    container_hook: Callable[[str, str, bool], None] | None = None  # (account, container, made)

    def _container_created(self, path: str) -> None:
        account, container = _account_container(path)
        if self.container_hook:
            self.container_hook(account, container, True)

    def _container_deleted(self, path: str) -> None:
        account, container = _account_container(path)
        if self.container_hook:
            self.container_hook(account, container, False)

    # --- actions ---------------------------------------------------------------------------

    def _action(
        self,
        kind_key: str,
        action: str,
        resource_id: str,
        model: Callable[[], type] | None,
        record: Request,
    ) -> tuple[int, Any, dict[str, str]]:
        self._authorize_action(record.principal, kind_key, action, resource_id)
        self._inject("POST", f"{resource_id}/{action}")
        with self.lock:
            found = self.resources.get(resource_id.lower())
        if found is None:
            raise self._not_found(resource_id)
        if kind_key == "microsoft.compute/virtualmachinescalesets" and action == "delete":
            self._check(model, record.body, create=True)
            wanted = [i.lower() for i in record.body["instanceIds"]]
            with self.lock:
                members = {
                    v.name.lower(): v
                    for v in self.vms.values()
                    if v.scale_set.lower() == resource_id.lower()
                }
                missing = [i for i in wanted if i not in members]
                if missing:
                    raise ArmError(
                        400,
                        "InvalidParameter",
                        f"The instance ids {missing} are not in the scale set.",
                    )

            def remove() -> None:
                with self.lock:
                    for i in wanted:
                        self._delete_vm(members[i].id)
                    found["sku"]["capacity"] = max(0, int(found["sku"]["capacity"]) - len(wanted))

            return self._start_operation(resource_id, None, "delete", None, remove, 202)
        if kind_key == "microsoft.compute/virtualmachinescalesets" and action == "deallocate":
            return self._deallocate(resource_id, model, record)
        if kind_key == "microsoft.storage/storageaccounts" and action == "listkeys":
            raise ArmError(
                409,
                "KeyBasedAuthenticationNotPermitted",
                "Key based authentication is not permitted on this storage account.",
            )
        raise ArmError(400, "InvalidAction", action)

    def _authorize_action(
        self, principal: str, kind_key: str, action: str, resource_id: str
    ) -> None:
        if principal != CALLER:
            self._check_action(principal, f"{kind_key}/{action}/action", resource_id)


VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def _actions(method: str, path: str, body: Any) -> list[str]:
    """The RBAC actions ARM checks for a request: its own, plus the linked ones a
    scale set needs (joining the subnet and security group, assigning the identity,
    and the VMs, disks, NICs and addresses it makes on the caller's behalf)."""
    _, namespace, type_path, _ = split_id(path)
    kind = (
        f"{namespace}/{type_path}"
        if namespace
        else "Microsoft.Resources/subscriptions/resourceGroups"
    )
    verb = VERBS.get(method, "action")
    actions = [f"{kind}/{verb}"]
    if kind.lower() == "microsoft.compute/virtualmachinescalesets" and method == "PUT":
        actions += [
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            "Microsoft.Network/networkSecurityGroups/join/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Compute/disks/write",
            "Microsoft.Network/networkInterfaces/write",
            "Microsoft.Network/networkInterfaces/join/action",
            "Microsoft.Network/publicIPAddresses/write",
            "Microsoft.Network/publicIPAddresses/join/action",
        ]
    if kind.lower() == "microsoft.network/virtualnetworks" and method == "PUT":
        actions.append("Microsoft.Network/networkSecurityGroups/join/action")
    return actions


def _matches(pattern: str, action: str) -> bool:
    regex = "^" + re.escape(pattern.lower()).replace("\\*", ".*") + "$"
    return re.match(regex, action.lower()) is not None


def _account_container(path: str) -> tuple[str, str]:
    m = re.search(r"(?i)/storageAccounts/([^/]+)/blobServices/[^/]+/containers/([^/]+)", path)
    assert m, path
    return m.group(1), m.group(2)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
