"""The fake API server's HTTP face: REST paths, bearer tokens, RBAC, audit, faults.

Paths, verbs and answers are the API server's: `/api/v1/namespaces/<ns>/<plural>[/<name>
[/<subresource>]]` and `/apis/<group>/<version>/...`; create/get/list (label and field
selectors)/update/patch (merge, strategic merge treated as merge)/delete (with
propagationPolicy and gracePeriodSeconds); the `status` subresource of jobs and pods;
`pods/<name>/log`, `pods/<name>/eviction` and `pods/<name>[:<port>]/proxy/<path>`, which
forwards to the pod's address only with the methods the real proxy allows (GET, POST,
PUT, PATCH, DELETE, HEAD, OPTIONS: WebDAV's PROPFIND is refused with 405 as there).

Every request is kept in `audit` (who, verb, resource, name, body, answer code), and
`fail(...)` makes the next matching requests fail with a given code, for rollback tests.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rbac
from .store import BY_PATH, BY_PLURAL, ApiError, Kind, Store, decode_body, merge_patch

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger(__name__)

# Resources whose DELETE answers with the object (the client's declared types), not a Status.
RETURNS_DELETED = frozenset(
    {"pods", "persistentvolumeclaims", "serviceaccounts", "namespaces", "nodes"}
)
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "authorization"}


@dataclass
class AuditEntry:
    method: str
    path: str
    query: dict[str, str]
    user: str
    verb: str
    resource: str  # plural, "pods/proxy" style with the subresource
    namespace: str
    name: str
    body: Any
    code: int = 0
    content_type: str = ""


@dataclass
class Fault:
    verb: str
    resource: str
    code: int
    name: str = ""
    times: int = 1
    reason: str = ""
    hits: int = field(default=0)
    skip: int = 0  # matching requests to let through first


REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class FakeApiServer:
    """The HTTP server on 127.0.0.1; `cluster` supplies deletion, eviction, logs, proxies."""

    def __init__(self, store: Store, cluster: Cluster) -> None:
        self.store, self.cluster = store, cluster
        self.tokens: dict[str, str] = {}  # bearer token -> user
        self.admins: set[str] = set()
        self.audit: list[AuditEntry] = []
        self.faults: list[Fault] = []
        self.audit_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="fake-k8s"
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    @property
    def tls(self) -> bool:
        return isinstance(self.httpd.socket, ssl.SSLSocket)

    def serve_tls(self, cert: Path, key: Path) -> None:
        """Answer over TLS with this certificate (before `start`); each connection's
        handshake runs in its own handler thread."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_user(self, token: str, user: str, *, admin: bool = False) -> None:
        self.tokens[token] = user
        if admin:
            self.admins.add(user)

    def fail(
        self,
        verb: str,
        resource: str,
        code: int = 500,
        *,
        name: str = "",
        times: int = 1,
        skip: int = 0,
    ) -> Fault:
        """The next `times` requests `verb` on `resource` (e.g. "create", "jobs") fail,
        after `skip` matching ones went through."""
        fault = Fault(
            verb, resource, code, name, times, REASONS.get(code, "InternalError"), skip=skip
        )
        self.faults.append(fault)
        return fault

    def _fault_for(self, verb: str, resource: str, name: str) -> Fault | None:
        for fault in self.faults:
            if (
                fault.hits < fault.times
                and fault.verb == verb
                and fault.resource == resource
                and (not fault.name or fault.name == name)
            ):
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.hits += 1
                return fault
        return None

    def requests(self, *, verb: str = "", resource: str = "", user: str = "") -> list[AuditEntry]:
        with self.audit_lock:
            return [
                e
                for e in self.audit
                if (not verb or e.verb == verb)
                and (not resource or e.resource == resource)
                and (not user or e.user == user)
            ]


@dataclass
class _Route:
    kind: Kind
    namespace: str
    name: str
    subresource: str
    port: str  # pods/<name>:<port>/proxy
    rest: str  # the proxied path


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    _entry: AuditEntry  # this request's audit record
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def do_PROPFIND(self) -> None:
        self._serve()

    def do_MKCOL(self) -> None:
        self._serve()

    # --- plumbing -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
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

    def _send(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._entry.code = code  # audited before the client can see the answer
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json", headers)

    # --- one request ----------------------------------------------------------------------

    def _serve(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        entry = AuditEntry(self.command, parsed.path, query, "", "", "", "", "", None)
        entry.content_type = self.headers.get("Content-Type", "")
        self._entry = entry
        with self.api.audit_lock:
            self.api.audit.append(entry)
        try:
            raw = self._read_body()
            # the scheme is case-insensitive (RFC 7235): the in-cluster loader sends "bearer"
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            user = self.api.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            entry.user = user
            route = _route(parsed.path)
            verb = _verb(self.command, route)
            entry.verb, entry.namespace, entry.name = verb, route.namespace, route.name
            entry.resource = route.kind.plural + (
                f"/{route.subresource}" if route.subresource else ""
            )
            if route.subresource == "proxy":
                entry.body = None
            elif raw:
                try:
                    entry.body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc
            request = rbac.Request(
                user,
                verb,
                route.kind.group,
                route.kind.plural,
                route.subresource,
                route.namespace,
                route.name,
            )
            if not rbac.allowed(self.api.store, request, frozenset(self.api.admins)):
                raise ApiError(
                    403,
                    "Forbidden",
                    rbac.forbidden_message(request),
                    kind=route.kind,
                    name=route.name,
                )
            fault = self.api._fault_for(verb, entry.resource, route.name)
            if fault is not None:
                raise ApiError(
                    fault.code, fault.reason, f"injected failure of {verb} {entry.resource}"
                )
            if route.subresource == "proxy":
                entry.code = self._proxy(route, raw)
            else:
                entry.code = self._dispatch(route, verb, query, entry.body)
        except ApiError as exc:
            entry.code = exc.code
            self._json(exc.code, exc.status())
        except Exception as exc:  # a bug in the fake: answer as the server would, and say so
            log.exception("fake API server error")
            entry.code = 500
            self._json(500, ApiError(500, "InternalError", f"fake server error: {exc}").status())

    def _dispatch(self, route: _Route, verb: str, query: dict[str, str], body: Any) -> int:
        store, kind = self.api.store, route.kind
        if query.get("watch") in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "the fake API server does not serve watches")
        field_validation = query.get("fieldValidation", "Warn")
        if route.subresource == "log":
            text = self.api.cluster.pod_log(route.namespace, route.name, query)
            self._send(200, text.encode(), "text/plain")
            return 200
        if route.subresource == "eviction":
            decode_body(BY_PLURAL["pods"], {}, "Strict")  # the pod kind exists
            from .schema import decode

            decoded = decode(body or {}, "V1Eviction")
            if decoded.unknown or decoded.type_errors:
                raise ApiError(400, "BadRequest", "; ".join(decoded.unknown + decoded.type_errors))
            self.api.cluster.evict(route.namespace, route.name)
            self._json(201, body or {"apiVersion": "policy/v1", "kind": "Eviction"})
            return 201
        if verb == "list":
            items = store.list(
                kind,
                route.namespace if kind.namespaced else None,
                query.get("labelSelector", ""),
                query.get("fieldSelector", ""),
            )
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            self._json(
                200,
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(store.revision)},
                    "items": items,
                },
            )
            return 200
        if verb == "get":
            self._json(200, store.get(kind, route.namespace, route.name))
            return 200
        if verb == "create":
            decoded, warnings = decode_body(kind, body, field_validation)
            made = store.create(kind, route.namespace, decoded)
            self._json(201, made, _warning_headers(warnings))
            return 201
        if verb in ("update", "patch"):
            if verb == "patch":
                content = self.headers.get("Content-Type", "")
                if "json-patch" in content and "merge" not in content:
                    raise ApiError(
                        415, "UnsupportedMediaType", "the fake serves merge patches only"
                    )
                current = store.get(kind, route.namespace, route.name)
                if route.subresource == "status":
                    body = {
                        **current,
                        "status": merge_patch(
                            current.get("status") or {}, (body or {}).get("status") or {}
                        ),
                    }
                else:
                    body = merge_patch(current, body or {})
                    body.setdefault("metadata", {}).pop("resourceVersion", None)
            decoded, warnings = decode_body(kind, body, field_validation)
            if route.subresource and route.subresource != "status":
                raise ApiError(405, "MethodNotAllowed", f"{route.subresource} is not writable")
            updated = store.replace(
                kind, route.namespace, route.name, decoded, subresource=route.subresource
            )
            self._json(200, updated, _warning_headers(warnings))
            return 200
        if verb == "delete":
            options = dict(body or {})
            if "propagationPolicy" in query:
                options["propagationPolicy"] = query["propagationPolicy"]
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            from .schema import decode

            decoded = decode(options, "V1DeleteOptions")
            if decoded.unknown or decoded.type_errors:
                raise ApiError(400, "BadRequest", "; ".join(decoded.unknown + decoded.type_errors))
            policy = options.get("propagationPolicy") or "Background"
            if policy not in ("Foreground", "Background", "Orphan"):
                raise ApiError(400, "BadRequest", f'unsupported propagationPolicy "{policy}"')
            obj = self.api.cluster.delete(
                kind, route.namespace, route.name, policy, options.get("gracePeriodSeconds")
            )
            if kind.plural in RETURNS_DELETED:
                self._json(200, obj)
            else:
                self._json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": route.name,
                            "group": kind.group,
                            "kind": kind.plural,
                            "uid": obj["metadata"]["uid"],
                        },
                    },
                )
            return 200
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on {kind.plural}")

    def _proxy(self, route: _Route, raw: bytes) -> int:
        if self.command not in PROXY_METHODS:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"the server does not allow this method on the requested resource ({self.command})",
            )
        address = self.api.cluster.pod_address(route.namespace, route.name)
        port = int(route.port or 80)
        conn = http.client.HTTPConnection(address, port, timeout=300)
        # As the API server's proxy (no UseLocationHost): the caller's Host header goes on
        # to the pod, Authorization does not; the path is decoded, then escaped again as
        # Go escapes a path; a trailing slash stays.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        split = urllib.parse.urlsplit(self.path)
        rest = urllib.parse.quote(route.rest, safe="/$&+,:;=@")
        if split.path.endswith("/") and route.rest and not rest.endswith("/"):
            rest += "/"
        target = "/" + rest + (f"?{split.query}" if split.query else "")
        try:
            conn.request(
                self.command,
                target,
                body=raw if raw or self.command in ("PUT", "POST", "PATCH") else None,
                headers=headers,
            )
            answer = conn.getresponse()
            data = answer.read()
        except OSError as exc:
            raise ApiError(
                503, "ServiceUnavailable", f"error trying to reach service: {exc}"
            ) from exc
        finally:
            conn.close()
        self._entry.code = answer.status
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                self.send_header(k, v)
        # a HEAD answer has no body but tells the length of the GET's
        length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return answer.status


def _warning_headers(warnings: list[str]) -> dict[str, str]:
    return {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else {}


def _route(path: str) -> _Route:
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    kind = BY_PATH.get((group, version, rest[0]))
    if kind is None:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )
    if kind.namespaced and not namespace and len(rest) > 1:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    port = ""
    if subresource == "proxy" and ":" in name:
        name, _, port = name.partition(":")
    if subresource and subresource not in kind.subresources:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({path})"
        )
    return _Route(kind, namespace, name, subresource, port, "/".join(rest[3:]))


def _verb(method: str, route: _Route) -> str:
    if route.subresource == "proxy":
        return {
            "GET": "get",
            "HEAD": "get",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "get")
    if route.subresource == "eviction":
        return "create"
    table: dict[str, Callable[[], str]] = {
        "GET": lambda: "get" if route.name else "list",
        "POST": lambda: "create",
        "PUT": lambda: "update",
        "PATCH": lambda: "patch",
        "DELETE": lambda: "delete" if route.name else "deletecollection",
    }
    if method not in table or (method == "POST" and route.name):
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")
    return table[method]()
