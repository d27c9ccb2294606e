"""6. Status at scale: `lifecycle.read` of an AWS task with parallelism 1 / 10 / 100 / 1,000,
against moto (EC2, Auto Scaling, S3) over HTTP, counting every request by service.

Each task is made with the real `lifecycle.create` (bucket, identity, template,
Auto Scaling group, desired = parallelism: moto then shows that many instances).
moto never runs user-data, so the machines' work is played by writing what their
agents would have written: one status report (its fields in its object's name,
see `reportnames`) and a log of 200 lines in 3 segments per machine. Then
`read(with_logs=False)` (`pulumi-iterative status`) is timed: the group's
instances and activities, and every boot's report from one listing of status/.
moto runs in this process (it has to: its image store is filled directly, see
`publish_images`), behind the counting middleware.

No baseline: the Terraform provider's read is not reproduced. Goal (issue 13):
at most 10 requests to the bucket at every size; logs are fetched only when
asked for (the provider's refresh asks for the tail of each).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from pulumi_iterative import lifecycle, logsegments, reportnames
from pulumi_iterative.records import BootReport
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
SIZES = (1, 10, 100, 1000)
BUCKET_GOAL = 10  # S3 requests per read, at any size


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
    paths = []
    for i in range(n):
        machine = f"{i}-{i:08x}"
        report = BootReport(
            machine, i, f"{i:08x}", f"i-{i:017x}", "running", started=1.0, generation=3
        )
        name = reportnames.object_name(report, 2)
        (folder / "status" / machine).mkdir(parents=True)
        (folder / "status" / name).write_bytes(reportnames.body(report))
        paths.append(f"status/{name}")
        log_text = "".join(f"epoch {e} loss {1 / (e + 1):.4f}\n" for e in range(200)).encode()
        (folder / "logs" / machine).mkdir(parents=True)
        cuts = [0, len(log_text) // 3, 2 * len(log_text) // 3, len(log_text)]
        for start, end in itertools.pairwise(cuts):
            seg = f"logs/{logsegments.segment_name(machine, start)}"
            (folder / seg).write_bytes(log_text[start:end])
            paths.append(seg)
    rclone = Rclone(Remote.from_dict(ref.remote))
    rclone.copy_files(str(folder), rclone.remote.path(), paths)


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
                            seconds, status = timed(
                                lambda ref=ref: lifecycle.read(ref, with_logs=False)
                            )
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
        bucket = services.get("s3", 0)
        row = Row(
            "6. status",
            f"read, AWS on moto, parallelism {n:,}",
            seconds,
            ours_req=total,
            req_unit="HTTP requests",
            goal=f"<= {BUCKET_GOAL} bucket requests",
            runs=reps,
            note=f"{by}; rclone calls {calls:g}; x{seconds / t1:.1f} time, "
            f"x{total / r1:.1f} requests vs 1 machine",
        )
        row.met = bucket <= BUCKET_GOAL
        if not row.met:
            row.why = f"{bucket:g} requests to the bucket"
        rows.append(row)
    return rows
