"""The fake GCP itself, driven through the real clients: strict by the discovery
documents, operations as the API returns them, a regional MIG that acts."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from pulumi_iterative.clouds.gcp import api
from tests.gcp.conftest import Gcp

REGION = "us-east1"


def wait_for(condition, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def make_template(gcp: Gcp, name: str = "t1", *, spot: bool = True, **scheduling: str) -> None:
    image = api.compute("Images").get_from_family(
        project="ubuntu-os-cloud", family="ubuntu-2404-lts-amd64"
    )
    props = compute_v1.InstanceProperties(
        machine_type="e2-medium",
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=image.self_link
                ),
            )
        ],
        metadata=compute_v1.Metadata(
            items=[compute_v1.Items(key="startup-script", value="#!/bin/sh\ntrue\n")]
        ),
        scheduling=compute_v1.Scheduling(
            provisioning_model="SPOT" if spot else "STANDARD",
            instance_termination_action="DELETE",
            **scheduling,
        ),
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )
    api.call(
        api.compute("InstanceTemplates").insert,
        project=gcp.project,
        instance_template_resource=compute_v1.InstanceTemplate(name=name, properties=props),
    )


def make_group(gcp: Gcp, name: str = "g1", template: str = "t1", on_failure: str = "") -> None:
    resource = compute_v1.InstanceGroupManager(
        name=name,
        base_instance_name=name,
        instance_template=f"global/instanceTemplates/{template}",
        target_size=0,
        update_policy=compute_v1.InstanceGroupManagerUpdatePolicy(
            instance_redistribution_type="NONE"
        ),
    )
    if on_failure:
        resource.instance_lifecycle_policy = compute_v1.InstanceGroupManagerInstanceLifecyclePolicy(
            default_action_on_failure=on_failure
        )
    api.call(
        api.compute("RegionInstanceGroupManagers").insert,
        project=gcp.project,
        region=REGION,
        instance_group_manager_resource=resource,
    )


def migs():  # type: ignore[no-untyped-def]
    return api.compute("RegionInstanceGroupManagers")


def managed(gcp: Gcp, group: str = "g1") -> list[compute_v1.ManagedInstance]:
    return list(
        migs().list_managed_instances(
            project=gcp.project, region=REGION, instance_group_manager=group
        )
    )


def create_named(gcp: Gcp, *names: str, group: str = "g1") -> None:
    request = compute_v1.RegionInstanceGroupManagersCreateInstancesRequest(
        instances=[compute_v1.PerInstanceConfig(name=n) for n in names]
    )
    api.call(
        migs().create_instances,
        project=gcp.project,
        region=REGION,
        instance_group_manager=group,
        region_instance_group_managers_create_instances_request_resource=request,
    )


def test_unknown_body_field_is_refused_in_googles_shape(gcp: Gcp) -> None:
    with pytest.raises(api.GcpError) as caught:
        api.call(
            api.rest,
            "POST",
            api.IAM,
            f"v1/projects/{gcp.project}/serviceAccounts",
            {"accountId": "someone-1", "serviceAccount": {"displayName": "x", "colour": "red"}},
        )
    assert caught.value.status == 400
    assert '"colour"' in str(caught.value) and "CreateServiceAccountRequest" in str(caught.value)
    assert gcp.fake.service_accounts == {}


def test_enum_and_nested_fields_are_checked_through_the_compute_client(gcp: Gcp) -> None:
    """The SDK sends whatever string it is given; the fake holds it to the API's enum."""
    with pytest.raises(api.GcpError, match="onHostMaintenance") as caught:
        make_template(gcp, spot=True, on_host_maintenance="SOMETIMES")  # wrong enum
    assert caught.value.status == 400 and isinstance(caught.value.__cause__, exceptions.BadRequest)
    # unknown methods and paths
    raw = api.session()
    answer = raw.post(gcp.fake.endpoint + f"/compute/v1/projects/{gcp.project}/global/nothing")
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    answer = raw.get(
        gcp.fake.endpoint + f"/compute/v1/projects/{gcp.project}/global/firewalls?colour=red"
    )
    assert answer.status_code == 400 and "colour" in answer.json()["error"]["message"]


def test_operations_are_done_and_served_by_get_and_wait(gcp: Gcp) -> None:
    make_template(gcp)
    make_group(gcp)
    operation = migs().resize(
        project=gcp.project, region=REGION, instance_group_manager="g1", size=2
    )
    assert operation.done()
    ops = api.compute("RegionOperations")
    for fn in (ops.get, ops.wait):
        found = fn(project=gcp.project, region=REGION, operation=operation.name)
        assert found.status == compute_v1.Operation.Status.DONE
        assert found.target_link.endswith("/instanceGroupManagers/g1")
    assert gcp.fake.calls("compute.regionInstanceGroupManagers.resize")[0].query["size"] == ["2"]


def test_mig_spreads_over_zones_recreates_preempted_and_leaves_with_target_reduced(
    gcp: Gcp,
) -> None:
    make_template(gcp)
    make_group(gcp)
    create_named(gcp, "g1-0", "g1-1", "g1-2")
    found = wait_for(lambda: len(managed(gcp)) == 3 and managed(gcp), "three instances")
    zones = {m.instance.split("/zones/")[1].split("/")[0] for m in found}
    assert zones == {"us-east1-b", "us-east1-c", "us-east1-d"}
    assert (
        migs().get(project=gcp.project, region=REGION, instance_group_manager="g1").target_size == 3
    )

    gcp.fake.preempt("g1-1")
    wait_for(
        lambda: any(m.name == "g1-1" and m.current_action == "DELETING" for m in managed(gcp)),
        "preempted instance shutting down",
    )
    wait_for(
        lambda: (
            [m.name for m in managed(gcp) if m.current_action == "NONE"] == ["g1-0", "g1-1", "g1-2"]
        ),
        "the group to make g1-1 again under its name",
    )
    preempted = api.compute("ZoneOperations")
    ops = [
        op
        for zone in ("us-east1-b", "us-east1-c", "us-east1-d")
        for op in preempted.list(
            request=compute_v1.ListZoneOperationsRequest(
                project=gcp.project,
                zone=zone,
                filter='operationType = "compute.instances.preempted"',
            )
        )
    ]
    assert [op.target_link.rsplit("/", 1)[1] for op in ops] == ["g1-1"]

    me = next(m for m in managed(gcp) if m.name == "g1-2")
    request = compute_v1.RegionInstanceGroupManagersDeleteInstancesRequest(
        instances=[me.instance.split("/projects/test-project/")[1]]
    )
    api.call(
        migs().delete_instances,
        project=gcp.project,
        region=REGION,
        instance_group_manager="g1",
        region_instance_group_managers_delete_instances_request_resource=request,
    )
    wait_for(lambda: [m.name for m in managed(gcp)] == ["g1-0", "g1-1"], "g1-2 gone for good")
    assert (
        migs().get(project=gcp.project, region=REGION, instance_group_manager="g1").target_size == 2
    )


def test_no_capacity_is_reported_by_list_errors(gcp: Gcp) -> None:
    make_template(gcp)
    make_group(gcp)
    gcp.fake.no_capacity.update({"us-east1-b", "us-east1-c", "us-east1-d"})
    create_named(gcp, "g1-0")
    errors = wait_for(
        lambda: list(
            migs().list_errors(project=gcp.project, region=REGION, instance_group_manager="g1")
        ),
        "an error",
    )
    assert errors[0].error.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert errors[0].instance_action_details.instance.endswith("/instances/g1-0")
    assert managed(gcp) == []
    gcp.fake.no_capacity.discard("us-east1-c")
    found = (
        wait_for(managed, "capacity back", timeout=30)
        if False
        else wait_for(lambda: managed(gcp), "the instance once a zone has capacity")
    )
    assert "/zones/us-east1-c/" in found[0].instance


def test_termination_time_deletes_and_nothing_comes_back(gcp: Gcp) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    make_template(gcp, termination_time=soon)
    make_group(gcp)
    create_named(gcp, "g1-0")
    wait_for(lambda: managed(gcp), "the instance")
    wait_for(lambda: not managed(gcp), "the backstop to delete it", timeout=30)
    errors = wait_for(
        lambda: list(
            migs().list_errors(project=gcp.project, region=REGION, instance_group_manager="g1")
        ),
        "the refused recreation",
    )
    assert "terminationTime" in errors[0].error.message
    time.sleep(0.5)  # the controller ticks every 0.1 s: it stays refused
    assert not managed(gcp)


def test_injected_failures_as_http_error_and_inside_the_operation(gcp: Gcp) -> None:
    gcp.fake.fail("compute.instanceTemplates.insert", code=503, times=1)
    make_template(gcp)  # api.call retries the 503
    assert len(gcp.fake.calls("compute.instanceTemplates.insert")) == 2
    gcp.fake.fail("compute.regionInstanceGroupManagers.insert", code=403, in_operation=True)
    with pytest.raises(api.GcpError) as caught:
        make_group(gcp)
    assert caught.value.status == 403
    assert gcp.fake.groups == {}  # a failed operation changed nothing
    with pytest.raises(ValueError, match="does not serve"):
        gcp.fake.fail("compute.nothing.insert")


def test_iam_service_accounts_roles_and_the_project_policy(gcp: Gcp) -> None:
    base = f"v1/projects/{gcp.project}"
    body = {"accountId": "task-account", "serviceAccount": {"displayName": "t"}}
    made = api.call(api.rest, "POST", api.IAM, f"{base}/serviceAccounts", body)
    assert made["email"] == f"task-account@{gcp.project}.iam.gserviceaccount.com"
    with pytest.raises(api.GcpError) as caught:
        api.call(api.rest, "POST", api.IAM, f"{base}/serviceAccounts", body)
    assert caught.value.status == 409

    role = {"roleId": "someRole", "role": {"title": "r", "includedPermissions": ["a.b.c"]}}
    api.call(api.rest, "POST", api.IAM, f"{base}/roles", role)
    api.call(api.rest, "DELETE", api.IAM, f"{base}/roles/someRole")
    assert api.call(api.rest, "GET", api.IAM, f"{base}/roles/someRole")["deleted"] is True
    with pytest.raises(api.GcpError):  # a deleted role's id is not free
        api.call(api.rest, "POST", api.IAM, f"{base}/roles", role)

    crm = f"v1/projects/{gcp.project}"
    policy = api.call(api.rest, "POST", api.CRM, f"{crm}:getIamPolicy", {})
    stale = dict(policy)
    policy["bindings"] = [
        {"role": "roles/storage.objectUser", "members": [f"serviceAccount:{made['email']}"]}
    ]
    api.call(api.rest, "POST", api.CRM, f"{crm}:setIamPolicy", {"policy": policy})
    with pytest.raises(api.GcpError) as caught:  # written meanwhile: the etag is stale
        api.call(api.rest, "POST", api.CRM, f"{crm}:setIamPolicy", {"policy": stale})
    assert caught.value.status == 409
    ghost = {"role": "roles/owner", "members": ["serviceAccount:nobody@x.iam.gserviceaccount.com"]}
    fresh = api.call(api.rest, "POST", api.CRM, f"{crm}:getIamPolicy", {})
    with pytest.raises(api.GcpError, match="does not exist"):
        api.call(
            api.rest,
            "POST",
            api.CRM,
            f"{crm}:setIamPolicy",
            {"policy": {**fresh, "bindings": [ghost]}},
        )


def test_named_instances_need_redistribution_off(gcp: Gcp) -> None:
    make_template(gcp)
    resource = compute_v1.InstanceGroupManager(
        name="g2", base_instance_name="g2", instance_template="global/instanceTemplates/t1",
        target_size=0,
    )  # fmt: skip
    api.call(
        migs().insert,
        project=gcp.project,
        region=REGION,
        instance_group_manager_resource=resource,
    )
    with pytest.raises(api.GcpError, match="instanceRedistributionType") as caught:
        create_named(gcp, "g2-0", group="g2")
    assert caught.value.status == 400


def test_instance_flexibility_needs_a_shape_other_than_even(gcp: Gcp) -> None:
    make_template(gcp)
    body = {
        "name": "g3",
        "baseInstanceName": "g3",
        "instanceTemplate": "global/instanceTemplates/t1",
        "targetSize": 0,
        "instanceFlexibilityPolicy": {
            "instanceSelections": {"a": {"rank": 0, "machineTypes": ["e2-medium"]}}
        },
    }
    path = f"compute/v1/projects/{gcp.project}/regions/{REGION}/instanceGroupManagers"
    with pytest.raises(api.GcpError, match="targetShape") as caught:
        api.call(api.rest, "POST", api.COMPUTE, path, body)
    assert caught.value.status == 400
    body["distributionPolicy"] = {"targetShape": "BALANCED"}
    api.call(api.rest, "POST", api.COMPUTE, path, body)
    assert gcp.fake.groups[f"{REGION}/g3"].zones == ("us-east1-b", "us-east1-c", "us-east1-d")


def _age_the_stop(gcp: Gcp, seconds: float) -> None:
    """As if the stopped members had been stopped `seconds` earlier, then one controller
    pass: no waiting on the repair delay."""
    from tests.gcp.fake_mig import reconcile_all

    with gcp.fake.lock:
        for instance in gcp.fake.instances.values():
            if instance.get("_stopped_at"):
                instance["_stopped_at"] -= seconds
        reconcile_all(gcp.fake)


@pytest.mark.parametrize("on_failure", ["", "REPAIR", "DO_NOTHING"])
def test_a_powered_off_member_is_repaired_only_where_the_group_repairs(
    gcp: Gcp, on_failure: str
) -> None:
    """GCE's instanceLifecyclePolicy: by default (REPAIR) a member stopped from inside
    (a guest power-off) is recreated; with DO_NOTHING it stays stopped, and a preempted
    spot member is not made again either."""
    from tests.gcp.fake_mig import REPAIR_DELAY, guest_shutdown

    make_template(gcp)
    make_group(gcp, on_failure=on_failure)
    create_named(gcp, "g1-0", "g1-1")
    first = {m.name: m for m in wait_for(lambda: len(managed(gcp)) == 2 and managed(gcp), "two")}
    assert guest_shutdown(gcp.fake, str(first["g1-0"].id))
    _age_the_stop(gcp, REPAIR_DELAY + 1)
    gcp.fake.preempt("g1-1")
    if on_failure == "DO_NOTHING":
        _age_the_stop(gcp, 60)
        (stopped,) = wait_for(lambda: managed(gcp) if len(managed(gcp)) == 1 else [], "g1-1 gone")
        assert stopped.name == "g1-0" and stopped.id == first["g1-0"].id
        assert stopped.instance_status == "TERMINATED"
        assert (
            migs().get(project=gcp.project, region=REGION, instance_group_manager="g1").target_size
            == 2
        )
        return

    def remade() -> list[compute_v1.ManagedInstance]:
        now = {m.name: m for m in managed(gcp)}
        fresh = [
            m for name, m in now.items()
            if m.id != first[name].id and m.instance_status == "RUNNING"
        ]  # fmt: skip
        return fresh if len(fresh) == 2 else []

    assert {m.name for m in wait_for(remade, "both made again")} == {"g1-0", "g1-1"}
    with gcp.fake.lock:
        repaired = [
            op["targetLink"].rsplit("/", 1)[1]
            for op in gcp.fake.operations.values()
            if op["operationType"] == "compute.instances.repair.recreateInstance"
        ]
    assert repaired == ["g1-0"]  # the preempted one was made again, not "repaired"


def test_an_unknown_action_on_failure_is_refused(gcp: Gcp) -> None:
    make_template(gcp)
    with pytest.raises(api.GcpError, match="defaultActionOnFailure"):
        make_group(gcp, on_failure="RESTART")
