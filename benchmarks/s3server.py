"""S3 on moto, in its own process, counting every request it answers.

`python -m benchmarks.s3server` serves moto's S3 on 127.0.0.1 (a free port,
printed as the first stdout line) behind a small WSGI wrapper that counts
requests by method. `GET /__bench/counts` returns the counts as JSON and
`POST /__bench/reset` zeroes them; neither is counted. Running moto in its own
process keeps its CPU use out of the timed Python code (on 2 cores it still
competes for CPU with rclone, the same for ours and the baseline).

`MotoS3` starts and stops that process and gives the rclone remote and the
environment for a bucket: `:s3:<bucket>/<prefix>` with RCLONE_S3_* settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
REGION = "us-east-1"


class CountingApp:
    """WSGI middleware: count requests by method and by AWS service (from the request's
    SigV4 credential scope); answer /__bench/ itself."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.methods: Counter[str] = Counter()
        self.services: Counter[str] = Counter()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {"methods": dict(self.methods), "services": dict(self.services)}

    def reset(self) -> None:
        with self.lock:
            self.methods.clear()
            self.services.clear()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench/"):
            if path == "/__bench/reset":
                self.reset()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.snapshot()).encode()]
        scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[-1].split("/")
        service = scope[3] if len(scope) > 3 else "unsigned"
        with self.lock:
            self.methods[environ.get("REQUEST_METHOD", "?")] += 1
            self.services[service] += 1
        return self.app(environ, start_response)


def serve() -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


class MotoS3:
    """A moto S3 server process and the rclone settings that reach it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> MotoS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.s3server"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the moto S3 server did not start")
        self.port = int(line)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.counts()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _bench(self, path: str, method: str = "GET") -> dict[str, Any]:
        req = urllib.request.Request(
            self.endpoint + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def counts(self) -> dict[str, int]:
        """Requests answered so far, by HTTP method."""
        return self._bench("/__bench/counts")["methods"]

    def total(self) -> int:
        return sum(self.counts().values())

    def reset_counts(self) -> None:
        self._bench("/__bench/reset", "POST")

    def reset(self) -> None:
        """Forget every bucket (moto's own reset endpoint) and zero the counts."""
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=60).close()
        self.reset_counts()

    def env(self) -> dict[str, str]:
        """rclone's settings for an on-the-fly `:s3:` remote pointed at this server."""
        return {
            "RCLONE_S3_PROVIDER": "Other",
            "RCLONE_S3_ENDPOINT": self.endpoint,
            "RCLONE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "RCLONE_S3_REGION": REGION,
            "RCLONE_S3_FORCE_PATH_STYLE": "true",
        }

    def make_bucket(self, bucket: str, rclone: str, env: Mapping[str, str] | None = None) -> None:
        subprocess.run(
            [rclone, "mkdir", f":s3:{bucket}"],
            env={**os.environ, "RCLONE_CONFIG": os.devnull, **self.env(), **(env or {})},
            check=True,
            capture_output=True,
        )


if __name__ == "__main__":
    serve()
