"""Cost on AWS (moto): no cloud call at preview, live spot prices at create, and the
billed time of a boot from EC2's own launch and termination times."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pulumi_iterative import cli, cost, lifecycle, registry
from pulumi_iterative.clouds.aws.backend import Backend
from pulumi_iterative.clouds.aws.prices import HOURLY
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.storage import TASK_FILE, Remote
from tests.aws.conftest import Moto, leftovers
from tests.aws.simulator import MachineSimulator
from tests.provider_server import provider_server


class Listener:
    """A port that counts every connection made to it (a cloud endpoint nobody may call)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.closing.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def cloud_endpoint() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def test_preview_shows_the_estimate_and_calls_no_cloud(
    cloud_endpoint: Listener, workdir: Path
) -> None:
    on_demand, _ = HOURLY["us-east-1"]["g4dn.xlarge"]
    news = {
        "cloud": "aws",
        "machine": "m+t4",
        "spot": on_demand * 2,  # above on-demand: warned about
        "parallelism": 2,
        "timeout": "10h",
        "budget": 4,
        "script": "#!/bin/sh\ntrue\n",
        "storage": {"workdir": str(workdir)},
    }
    env = {
        "AWS_ENDPOINT_URL": cloud_endpoint.endpoint,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": cloud_endpoint.endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAPREVIEW",
        "AWS_SECRET_ACCESS_KEY": "preview",
    }
    with provider_server(TaskProvider(), env=env) as server:
        checked, failures = server.check("train", {}, news)
        assert failures == []
        server.diff("id", "train", checked, checked)
        messages = server.stderr_text()
    typical = HOURLY["us-east-1"]["g4dn.xlarge"][1]
    assert f"estimate: 2 x g4dn.xlarge in us-east-1 at {cost.money(typical, 'USD')}/h" in messages
    assert f"up to the 10h timeout: {cost.money(typical * 2 * 10, 'USD')}" in messages
    assert "budget 4.00 USD: stops the task after about" in messages
    assert "is above the on-demand price of g4dn.xlarge" in messages
    assert cloud_endpoint.connections == 0


def test_live_spot_prices_are_asked_at_create_only(moto: Moto, workdir: Path) -> None:
    types = ("t3.medium", "t3a.medium")
    live = Backend().live_prices("us-east-1", types)
    # moto's spot price history: one price per zone offering the type (spot only)
    assert set(live) == set(types)
    assert all(p.spot and p.spot > 0 and p.on_demand is None for p in live.values())
    spec = parse_spec(
        {"cloud": "aws", "machine": "s", "spot": 0, "script": "true", "storage": {}},
        check_paths=False,
    )
    assert (
        cost.pricing_for(spec).rate == HOURLY["us-east-1"]["t3.medium"][1]
    )  # preview: the snapshot
    ref = lifecycle.create(spec)
    pricing = cost.Pricing.from_dict(ref.pricing)
    assert pricing.hourly == {t: p.spot for t, p in live.items()}
    assert pricing.source == "AWS spot price history at create"
    assert pricing.date == datetime.now(timezone.utc).date().isoformat()
    # The machines' budget check reads the same prices from the task definition.
    definition = lifecycle.rclone_for(ref).cat(Remote.from_dict(ref.remote).path(TASK_FILE))
    assert b'"source": "AWS spot price history at create"' in definition
    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []


def test_a_boot_is_billed_from_ec2s_launch_to_its_termination(
    moto: Moto, simulator: MachineSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = parse_spec(
        {
            "cloud": "aws",
            "machine": "s",
            "script": "#!/bin/sh\necho working\n",
            "storage": {"workdir": str(workdir)},
        }
    )
    ref = lifecycle.create(spec)
    registry.remember(ref)  # as the CLI's create does, so `status` and `list` find it
    simulator.start()
    # Done, and the machine has left the group (terminated): nothing bills any more.
    status = simulator.wait_status(
        ref, lambda s: s.done and s.cost is not None and s.cost.final, timeout=120
    )
    assert status.state == State.SUCCEEDED, simulator.report()
    spent = status.cost
    assert spent is not None
    (boot,) = spent.boots
    (instance,) = [
        i
        for r in moto.client("ec2").describe_instances(InstanceIds=[boot.instance])["Reservations"]
        for i in r["Instances"]
    ]
    assert instance["State"]["Name"] == "terminated"
    # EC2's own record: LaunchTime, and the termination time in StateTransitionReason.
    launched = instance["LaunchTime"].timestamp()
    stamp = instance["StateTransitionReason"].split("(")[1].split(" UTC")[0].split(" GMT")[0]
    ended = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    actual = ended.timestamp() - launched
    assert boot.timed_by == "cloud" and boot.type == instance["InstanceType"] == "t3.medium"
    assert boot.zone == instance["Placement"]["AvailabilityZone"]
    assert boot.seconds == pytest.approx(max(60.0, actual))  # AWS bills at least a minute
    # The machine's own metadata (the identity document) put its type and launch time in
    # its report, so its agent's budget counts the boot time too, at the right price.
    (report,) = lifecycle.reports(ref).boots
    assert report.machine_type == "t3.medium"
    assert report.launched == pytest.approx(launched, abs=1.0)
    assert report.launched <= (report.started or 0)
    on_demand = HOURLY["us-east-1"]["t3.medium"][0]
    assert spent.total == pytest.approx(on_demand * boot.seconds / 3600)
    assert spent.per_index == {0: pytest.approx(spent.total)}
    assert spent.currency == "USD" and spent.basis == "on-demand"

    assert cli.main(["status", ref.task_id]) == 0
    printed = capsys.readouterr().out
    assert f"cost: {cost.money(spent.total, 'USD')} (on-demand)" in printed
    assert "t3.medium" in printed and "(cloud times)" in printed
    assert cli.main(["list"]) == 0
    assert cost.money(spent.total, "USD") in capsys.readouterr().out
    lifecycle.delete(ref)
    assert leftovers(moto, ref.task_id) == []
