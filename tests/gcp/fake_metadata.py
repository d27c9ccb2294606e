"""A protocol-faithful stand-in for the GCE metadata server, one per simulated machine.

Like the real one at `metadata.google.internal`: every request must carry
`Metadata-Flavor: Google` (else 403), one with `X-Forwarded-For` is refused (a
proxied request), and answers carry `Metadata-Flavor: Google` and an ETag. A value
read with `?wait_for_change=true` blocks until it changes from `last_etag` (or from
what it was) or `timeout_sec` passes, as the agent's preemption watch uses it.
`?recursive=true` on a folder answers JSON. It serves what google-auth, rclone's Go
SDK and the agent ask: the project, the instance's name, id, zone and attributes
(metadata items, incl. `created-by`), the service account's email, scopes and an
access token (registered with the fake GCP so it can enforce IAM on the machine's
calls), and `instance/preempted` (FALSE until `preempt()`).

Point a process at it with GCE_METADATA_HOST (google-auth and the Go SDK honour it)
and GCE_METADATA_IP (google-auth's "am I on GCE" ping).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/computeMetadata/v1/"
MAX_WAIT = 300.0


class FakeMetadata:
    def __init__(
        self,
        *,
        project: str,
        project_number: str,
        instance: dict[str, Any],
        account: str,
        scopes: list[str],
        tokens: dict[str, str] | None = None,
    ) -> None:
        self.project, self.project_number = project, project_number
        self.instance = instance  # the compute API's Instance JSON
        self.account, self.scopes = account, scopes
        self.token = "ya29.machine-" + secrets.token_urlsafe(24)
        if tokens is not None:
            tokens[self.token] = account
        self.preempted = False
        self.changed = threading.Condition()
        self.requests: list[tuple[str, int]] = []  # (path, status) as answered
        self.arrived: list[str] = []  # paths as asked (a held wait_for_change is here)
        self.dropped = 0
        meta = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def reply(self, code: int, body: str, kind: str = "application/text") -> None:
                data = body.encode()
                meta.requests.append((self.path, code))
                self.send_response(code)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", kind)
                self.send_header("ETag", hashlib.sha1(data).hexdigest()[:16])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                meta.arrived.append(self.path)
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self.reply(403, "Missing Metadata-Flavor:Google header.")
                if self.headers.get("X-Forwarded-For"):
                    return self.reply(403, "Request had X-Forwarded-For header.")
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                if parts.path in ("/", "/computeMetadata/v1", "/computeMetadata/v1/"):
                    return self.reply(200, "instance/\nproject/\n")
                if not parts.path.startswith(PREFIX):
                    return self.reply(404, "Not Found")
                path = parts.path[len(PREFIX) :]
                if query.get("wait_for_change") == "true":
                    meta.wait(path, query)
                found = meta.lookup(path, query.get("recursive") == "true")
                if found is None:
                    return self.reply(404, "Not Found")
                body, kind = found
                self.reply(200, body, kind)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                import sys

                if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    meta.dropped += 1
                    return
                super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def env(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def preempt(self) -> None:
        """GCE's preemption notice: `instance/preempted` turns TRUE."""
        with self.changed:
            self.preempted = True
            self.changed.notify_all()

    def wait(self, path: str, query: dict[str, str]) -> None:
        before = self.lookup(path, False)
        etag = query.get("last_etag") or (
            hashlib.sha1(before[0].encode()).hexdigest()[:16] if before else ""
        )
        end = time.monotonic() + min(float(query.get("timeout_sec") or MAX_WAIT), MAX_WAIT)
        with self.changed:
            while True:
                now = self.lookup(path, False)
                if now and hashlib.sha1(now[0].encode()).hexdigest()[:16] != etag:
                    return
                left = end - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(min(left, 1.0))

    def attributes(self) -> dict[str, str]:
        items = (self.instance.get("metadata") or {}).get("items") or []
        return {i["key"]: i.get("value", "") for i in items}

    def lookup(self, path: str, recursive: bool) -> tuple[str, str] | None:
        zone = self.instance["zone"].rsplit("/", 1)[-1]
        account = {
            "aliases": ["default"],
            "email": self.account,
            "scopes": self.scopes,
        }
        if path.startswith("instance/service-accounts/"):
            rest = path[len("instance/service-accounts/") :]
            who, _, leaf = rest.partition("/")
            if who not in ("default", self.account):
                return None
            if leaf in ("", "/") and recursive:
                return json.dumps(account), "application/json"
            if leaf == "email":
                return self.account, "application/text"
            if leaf == "scopes":
                return "\n".join(self.scopes) + "\n", "application/text"
            if leaf == "token":
                token = {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
                return json.dumps(token), "application/json"
            return None
        if path.startswith("instance/attributes/"):
            key = path[len("instance/attributes/") :]
            attributes = self.attributes()
            if not key and recursive:
                return json.dumps(attributes), "application/json"
            if key in attributes:
                return attributes[key], "application/text"
            return None
        table = {
            "project/project-id": self.project,
            "project/numeric-project-id": self.project_number,
            "instance/name": self.instance["name"],
            "instance/hostname": f"{self.instance['name']}.c.{self.project}.internal",
            "instance/id": str(self.instance["id"]),
            "instance/zone": f"projects/{self.project_number}/zones/{zone}",
            "instance/preempted": "TRUE" if self.preempted else "FALSE",
            "instance/maintenance-event": "NONE",
        }
        if path in table:
            return table[path], "application/text"
        return None

    def close(self) -> None:
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()
