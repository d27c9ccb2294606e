"""A stand-in for Azure's Instance Metadata Service, one per simulated VM.

Like the real one, every request must carry `Metadata: true` (else 400) and come
without an X-Forwarded-For header. It serves what the agent, azure-identity and
the machine side use:
- `/metadata/instance/compute`: the VM's name, resource group, subscription, scale
  set, zone (and each as text, `/metadata/instance/compute/name?format=text`);
- `/metadata/identity/oauth2/token`: a token of the VM's *managed identity* (granted
  by the fake Resource Manager for that identity's principal: never the caller's);
- `/metadata/scheduledevents`: empty until `preempt()`, then a `Preempt` event
  naming this VM, as Azure posts about 30 s before it evicts a spot VM.

The same identity's tokens are also served at `/msi/token` in the App Service
managed-identity protocol (IDENTITY_ENDPOINT, with the X-IDENTITY-HEADER secret):
that is the one managed-identity source the Go SDK inside rclone can be pointed at
(its IMDS address is fixed), and azure-identity follows the same variables.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeImds:
    def __init__(self, compute: dict[str, Any], tokens: dict[str, str]) -> None:
        self.compute = compute
        self.identity_header = uuid.uuid4().hex  # App Service's per-process secret
        self.tokens = tokens  # resource (audience) -> the identity's access token
        self.events: list[dict[str, Any]] = []
        self.incarnation = 1
        self.requests: list[tuple[str, int]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def reply(self, code: int, body: Any) -> None:
                text = isinstance(body, str)  # a leaf asked with format=text
                data = (body if text else json.dumps(body)).encode()
                imds.requests.append((self.path, code))
                self.send_response(code)
                kind = "text/plain" if text else "application/json"
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/msi/token":
                    if self.headers.get("X-IDENTITY-HEADER") != imds.identity_header:
                        return self.reply(401, {"error": "missing or wrong X-IDENTITY-HEADER"})
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    found = imds.token(query)
                    return self.reply(*found)
                if self.headers.get("Metadata", "").lower() != "true" or self.headers.get(
                    "X-Forwarded-For"
                ):
                    return self.reply(
                        400, {"error": "Bad request. Required metadata header not specified"}
                    )
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if "api-version" not in query:
                    return self.reply(
                        400, {"error": "Bad request. api-version was not specified in the request"}
                    )
                found = imds.lookup(url.path, query)
                if found is None:
                    return self.reply(404, {"error": "Not found"})
                self.reply(*found)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def preempt(self) -> None:
        when = datetime.now(timezone.utc) + timedelta(seconds=30)
        self.events.append(
            {
                "EventId": str(uuid.uuid4()),
                "EventStatus": "Scheduled",
                "EventType": "Preempt",
                "ResourceType": "VirtualMachine",
                "Resources": [self.compute["name"]],
                "NotBefore": when.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                "Description": "Spot VM eviction",
                "EventSource": "Platform",
                "DurationInSeconds": -1,
            }
        )
        self.incarnation += 1

    def lookup(self, path: str, query: dict[str, str]) -> tuple[int, Any] | None:
        if path == "/metadata/instance/compute":
            return 200, self.compute
        if path.startswith("/metadata/instance/compute/"):
            # one field, which IMDS serves only as text
            if query.get("format") != "text":
                return 400, {"error": "Bad request. A leaf is served with format=text only"}
            found = self.compute.get(path.rsplit("/", 1)[1])
            return None if found is None else (200, str(found))
        if path == "/metadata/instance":
            return 200, {"compute": self.compute, "network": {"interface": []}}
        if path == "/metadata/scheduledevents":
            return 200, {"DocumentIncarnation": self.incarnation, "Events": self.events}
        if path == "/metadata/identity/oauth2/token":
            return self.token(query)
        return None

    def token(self, query: dict[str, str]) -> tuple[int, Any]:
        """The identity's token for `resource` (IMDS and App Service answer alike)."""
        resource = query.get("resource", "").rstrip("/")
        token = self.tokens.get(resource)
        if token is None:
            return 400, {"error": "invalid_resource", "error_description": f"no {resource}"}
        now = int(time.time())
        return 200, {
            "access_token": token,
            "refresh_token": "",
            "expires_in": "3599",
            "expires_on": str(now + 3599),
            "not_before": str(now),
            "resource": query.get("resource", ""),
            "token_type": "Bearer",
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
