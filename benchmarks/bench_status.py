"""6. Status at scale: `lifecycle.read` of an AWS task with parallelism 1 / 10 / 100,
against moto (EC2, Auto Scaling, S3) over HTTP, counting every request by service.

Each task is made with the real `lifecycle.create` (bucket, identity, template,
Auto Scaling group, desired = parallelism: moto then shows that many instances).
moto never runs user-data, so the machines' work is played by writing what their
agents would have written: one status report and one log (200 lines) per
machine into the bucket. Then `read` (the provider's refresh, `pulumi-iterative
status`) is timed: the group's instances and activities, every report in one
`rclone cat` of status/, every log in one `rclone copy` of logs/. moto runs in
this process (it has to: its image store is filled directly, see
`publish_images`), behind the counting middleware.

No baseline: the Terraform provider's read is not reproduced. The goal is about
growth: requests and time from 1 to 100 machines should grow no faster than
the number of machines, with requests batched (a constant number of rclone
calls and cloud API calls that list many at once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from pulumi_iterative import lifecycle
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.storage import Rclone, Remote

from .common import Row, Scratch, counting_rclone, log, median, timed
from .s3server import CountingApp

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
UBUNTU = "099720109477"
IMAGES = (
    (UBUNTU, "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250301", "2025-03-01"),
    (UBUNTU, "ubuntu/images/hvm-ssd-gp3/ubuntu-jammy-22.04-amd64-server-20250401", "2025-04-01"),
)
SIZES = (1, 10, 100)


class InProcessMoto:
    """moto's server in a thread of this process, counting requests (CountingApp)."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.app = CountingApp(DomainDispatcherApplication(create_backend_app))
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


def publish_images() -> None:
    """Put Canonical's images into moto's store: moto cannot publish an image from
    another account through its API (the one place this reaches past the API)."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami

    backend = ec2_backends[ACCOUNT][REGION]
    for n, (owner, name, created) in enumerate(IMAGES):
        ami_id = f"ami-0b{n:015d}"
        backend.amis[ami_id] = Ami(
            backend,
            ami_id=ami_id,
            name=name,
            owner_id=owner,
            public=True,
            architecture="x86_64",
            virtualization_type="hvm",
            root_device_type="ebs",
            root_device_name="/dev/sda1",
            creation_date=datetime.fromisoformat(created).replace(tzinfo=timezone.utc),
            region_name=f"{REGION}a",
        )


@contextlib.contextmanager
def aws_environment(endpoint: str) -> Iterator[None]:
    """Test credentials and moto's endpoint for boto3 and rclone; restored after."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "RCLONE_"))}
    for k in saved:
        del os.environ[k]
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench-access-key",
        AWS_SECRET_ACCESS_KEY="bench-secret-key",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith(("AWS_", "RCLONE_"))]:
            del os.environ[k]
        os.environ.update(saved)


def play_machines(ref: Any, n: int, scratch: Scratch) -> None:
    """What n agents would have written: a report and a log each (one upload, untimed)."""
    folder = scratch.fresh("status-play")
    (folder / "status").mkdir()
    (folder / "logs").mkdir()
    for i in range(n):
        machine = f"{i}-{i:08x}"
        (folder / "status" / f"{machine}.json").write_text(
            f'{{"machine": "{machine}", "index": {i}, "state": "running", '
            f'"started": 1.0, "restarts": 0, "generation": 3}}\n'
        )
        (folder / "logs" / f"{machine}.log").write_text(
            "".join(f"epoch {e} loss {1 / (e + 1):.4f}\n" for e in range(200))
        )
    rclone = Rclone(Remote.from_dict(ref.remote))
    rclone.copy_files(
        str(folder),
        rclone.remote.path(),
        [
            f"{d}/{i}-{i:08x}.{ext}"
            for i in range(n)
            for d, ext in (("status", "json"), ("logs", "log"))
        ],
    )


def run(scratch: Scratch, quick: bool) -> list[Row]:
    home = scratch.path("home")
    os.environ["PULUMI_ITERATIVE_HOME"] = str(home)
    workdir = scratch.fresh("wd-status")
    (workdir / "train.py").write_text("print('train')\n")
    reps = 3 if quick else 5
    moto = InProcessMoto()
    measured: dict[int, tuple[float, float, float, dict[str, float]]] = {}
    try:
        with aws_environment(moto.endpoint):
            publish_images()
            for n in SIZES:
                log(f"status: creating an AWS task with parallelism {n} on moto")
                spec = parse_spec(
                    {
                        "cloud": "aws",
                        "region": "us-east",
                        "machine": "m",
                        "name": f"status-{n}",
                        "script": "#!/bin/sh\npython train.py\n",
                        "parallelism": n,
                        "storage": {"workdir": str(workdir)},
                    }
                )
                ref = lifecycle.create(spec)
                try:
                    play_machines(ref, n, scratch)
                    times, calls, totals = [], [], []
                    services: dict[str, list[float]] = {}
                    for _ in range(reps):
                        moto.app.reset()
                        with counting_rclone() as count:
                            seconds, status = timed(lambda ref=ref: lifecycle.read(ref))
                        snap = moto.app.snapshot()["services"]
                        assert len(status.machines) >= n, "read did not see every machine"
                        times.append(seconds)
                        calls.append(count[0])
                        totals.append(sum(snap.values()))
                        for k, v in snap.items():
                            services.setdefault(k, []).append(v)
                    measured[n] = (
                        median(times),
                        median(calls),
                        median(totals),
                        {k: median(v) for k, v in services.items()},
                    )
                finally:
                    with contextlib.suppress(Exception):
                        lifecycle.delete(ref, pull_outputs=False)
    finally:
        moto.close()
    return rows_for(measured, reps)


def rows_for(
    measured: dict[int, tuple[float, float, float, dict[str, float]]], reps: int
) -> list[Row]:
    rows = []
    t1, _, r1, _ = measured[1]
    for n, (seconds, calls, total, services) in sorted(measured.items()):
        by = ", ".join(f"{k} {v:g}" for k, v in sorted(services.items()))
        row = Row(
            "6. status",
            f"read, AWS on moto, parallelism {n}",
            seconds,
            ours_req=total,
            req_unit="HTTP requests",
            goal="grows <= machines; batched",
            runs=reps,
            note=f"{by}; rclone calls {calls:g}; x{seconds / t1:.1f} time, "
            f"x{total / r1:.1f} requests vs 1 machine",
        )
        row.met = seconds / t1 <= n and total / r1 <= n and calls <= measured[1][1]
        rows.append(row)
    return rows
