"""A loopback proxy in front of moto that refuses chosen AWS actions a few times.

moto has no fault injection, and some behaviours only show against a cloud that
says "not yet": IAM propagation ("Invalid IAM Instance Profile name" right after
the profile was made), or leaving a group while it scales (ScalingActivityInProgress).
Clients point AWS_ENDPOINT_URL here; every request is forwarded to moto unchanged,
except the first `times` requests of a refused action, which get the error AWS
sends for query-protocol services (Auto Scaling, IAM, EC2-style XML).
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Refusal:
    action: str
    code: str
    message: str
    times: int
    status: int = 400
    refused: int = 0


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.refusals: list[Refusal] = []
        self.seen: list[str] = []  # every query-protocol action, in order
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def handle_any(self) -> None:
                body = self.read_body()
                refusal = proxy.refusal_for(self.command, self.path, body)
                if refusal is not None:
                    xml = (
                        "<ErrorResponse><Error><Type>Sender</Type>"
                        f"<Code>{refusal.code}</Code><Message>{refusal.message}</Message>"
                        "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
                    ).encode()
                    self.send_response(refusal.status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                hop = ("connection", "transfer-encoding", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                head = self.command == "HEAD"  # its Content-Length describes the object
                for k, v in answer.getheaders():
                    if k.lower() in ("transfer-encoding", "connection"):
                        continue
                    if k.lower() == "content-length" and not head:
                        continue
                    self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                conn.close()

            def read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def refuse(self, action: str, code: str, message: str, times: int) -> Refusal:
        refusal = Refusal(action, code, message, times)
        with self.lock:
            self.refusals.append(refusal)
        return refusal

    def refusal_for(self, method: str, path: str, body: bytes) -> Refusal | None:
        if method != "POST":
            return None
        query = urllib.parse.parse_qs(body.decode(errors="replace"))
        action = (query.get("Action") or [""])[0]
        if not action:
            return None
        with self.lock:
            self.seen.append(action)
            for refusal in self.refusals:
                if refusal.action == action and refusal.refused < refusal.times:
                    refusal.refused += 1
                    return refusal
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
