"""A protocol-faithful stand-in for the EC2 instance metadata service (IMDSv2 only).

moto has no IMDS, so each simulated machine gets one of these on its own
loopback port, pointed at through AWS_EC2_METADATA_SERVICE_ENDPOINT (the
variable boto3 and the Go SDK inside rclone both honour). Like the real one
with `HttpTokens=required`: a session token comes from `PUT /latest/api/token`
(which must carry the TTL header), and every GET without a valid token gets 401.
It serves the paths the agent, boto3 and rclone use: instance id, region and
zone, the instance role's credentials, and the spot interruption notice (404
until `interrupt()` is called).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


class FakeImds:
    def __init__(
        self,
        instance_id: str,
        region: str,
        zone: str,
        role: str,
        credentials: tuple[str, str, str],
        instance_type: str = "t3.medium",
        launched: datetime | None = None,
    ) -> None:
        self.instance_id, self.region, self.zone, self.role = instance_id, region, zone, role
        self.instance_type = instance_type
        self.launched = launched or datetime.now(timezone.utc)
        self.credentials = credentials  # the instance role's (never the caller's)
        self.tokens: dict[str, float] = {}
        self.notice: dict[str, str] | None = None
        self.requests: list[tuple[str, str, int]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def reply(
                self, code: int, body: str = "", kind: str = "text/plain", ttl: str = ""
            ) -> None:
                data = body.encode()
                imds.requests.append((self.command, self.path, code))
                self.send_response(code)
                if ttl:
                    self.send_header(TOKEN_TTL_HEADER, ttl)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path != "/latest/api/token":
                    return self.reply(404)
                ttl = self.headers.get(TOKEN_TTL_HEADER)
                if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self.reply(400)
                token = secrets.token_urlsafe(24)
                imds.tokens[token] = time.time() + int(ttl)
                self.reply(200, token, ttl=ttl)

            def do_GET(self) -> None:
                token = self.headers.get(TOKEN_HEADER, "")
                if imds.tokens.get(token, 0) < time.time():
                    return self.reply(401)
                found = imds.lookup(self.path)
                if found is None:
                    return self.reply(404)
                body, kind = found
                self.reply(200, body, kind)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # A client that hung up first (a killed machine, a timed-out SDK) is
                # counted, not printed; anything else is a bug in this fake.
                import sys

                if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    imds.dropped += 1
                    return
                super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.dropped = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def interrupt(self, action: str = "terminate") -> None:
        """The spot interruption notice: two minutes of warning, as AWS gives."""
        when = datetime.now(timezone.utc) + timedelta(minutes=2)
        self.notice = {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def lookup(self, path: str) -> tuple[str, str] | None:
        path = path.split("?", 1)[0]
        md = "/latest/meta-data/"
        creds = md + "iam/security-credentials/"
        access, secret, session = self.credentials
        now = datetime.now(timezone.utc)
        table = {
            md + "instance-id": self.instance_id,
            md + "placement/region": self.region,
            md + "placement/availability-zone": self.zone,
            creds: self.role,
            creds.rstrip("/"): self.role,
        }
        if path in table:
            return table[path], "text/plain"
        if path == creds + self.role:
            body = {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": access,
                "SecretAccessKey": secret,
                "Token": session,
                "Expiration": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            return json.dumps(body), "application/json"
        if path == "/latest/dynamic/instance-identity/document":
            doc = {
                "instanceId": self.instance_id,
                "region": self.region,
                "availabilityZone": self.zone,
                "accountId": "123456789012",
                "instanceType": self.instance_type,
                "pendingTime": self.launched.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            return json.dumps(doc), "application/json"
        if path == md + "spot/instance-action" and self.notice is not None:
            return json.dumps(self.notice), "application/json"
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
