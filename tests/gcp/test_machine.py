"""The machine side against a fake metadata server and the fake GCP: the index is the
instance's name, the preemption notice arrives through wait_for_change, and leaving the
group works with the task's own identity on its own group only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pulumi_iterative.clouds.gcp.machine import MachineSide
from pulumi_iterative.clouds.gcp.names import Names
from pulumi_iterative.clouds.gcp.resources import group, identity, template
from pulumi_iterative.records import BootConfig
from tests.gcp.conftest import Gcp
from tests.gcp.fake_compute import public
from tests.gcp.fake_gcp import PROJECT_NUMBER
from tests.gcp.fake_metadata import FakeMetadata
from tests.gcp.test_resources import REGION, body

NAMES = Names("unit-abcdefgh12")


@pytest.fixture
def machine(
    gcp: Gcp, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[MachineSide, FakeMetadata]]:
    email = identity.create_account(gcp.project, NAMES)
    template.create_template(gcp.project, body(gcp, machine="e2-medium"))
    group.create_group(
        gcp.project,
        REGION,
        group.group_body(NAMES, gcp.project, REGION, "", ("e2-medium",), spot=True),
    )
    group.start(gcp.project, REGION, NAMES, 2)
    deadline = time.monotonic() + 30
    while True:
        found = [i for i in gcp.fake.instances.values() if i["name"] == NAMES.instance(1)]
        if found:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    meta = FakeMetadata(
        project=gcp.project,
        project_number=PROJECT_NUMBER,
        instance=public(found[0]),
        account=email,
        scopes=list(template.MACHINE_SCOPES),
        tokens=gcp.fake.tokens,
    )
    for name, value in meta.env().items():
        monkeypatch.setenv(name, value)
    config = BootConfig(task_id=NAMES.task_id, cloud="gcp", remote={}, version="0")
    yield MachineSide(config), meta
    meta.close()


def test_index_and_identity_come_from_the_metadata_server(
    machine: tuple[MachineSide, FakeMetadata],
) -> None:
    side, meta = machine
    assert side.name() == NAMES.instance(1)
    assert side.instance_id() == str(meta.instance["id"])
    assert side.index() == 1
    assert side.project() == "test-project" and side.region() == REGION
    assert str(side.home()).endswith("pulumi-iterative")
    assert all(
        path != "/computeMetadata/v1/instance/name" or code == 200 for path, code in meta.requests
    )


def test_preemption_notice_through_wait_for_change(
    machine: tuple[MachineSide, FakeMetadata],
) -> None:
    side, meta = machine
    assert side.preemption_notice() is False
    deadline = time.monotonic() + 10
    while not any("wait_for_change=true" in p for p in meta.arrived):
        assert time.monotonic() < deadline, "the watcher never held a wait_for_change open"
        time.sleep(0.05)
    meta.preempt()
    deadline = time.monotonic() + 10
    while not side.preemption_notice():
        assert time.monotonic() < deadline, "the notice never reached the agent"
        time.sleep(0.05)


def test_leaving_needs_the_conditional_binding_and_lowers_the_target(
    gcp: Gcp, machine: tuple[MachineSide, FakeMetadata]
) -> None:
    side, meta = machine
    from pulumi_iterative.clouds.gcp.api import GcpError

    with pytest.raises(GcpError) as caught:
        side.leave_group()
    assert caught.value.status == 403
    member = f"serviceAccount:{NAMES.account_email(gcp.project)}"
    other = Names("other-abcdefgh12")
    identity.ensure_role(gcp.project)
    identity.grant_group(gcp.project, REGION, other, member)  # someone else's group only
    with pytest.raises(GcpError):
        side.leave_group()
    identity.grant_group(gcp.project, REGION, NAMES, member)
    side.leave_group()
    calls = gcp.fake.calls("compute.regionInstanceGroupManagers.deleteInstances")
    assert calls[-1].auth == f"Bearer {meta.token}"  # the machine's own token, not the caller's
    assert group.read_group(gcp.project, REGION, NAMES).target_size == 1
