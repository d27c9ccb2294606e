"""The cloud refuses each create request in turn (the fake's own failure injection, as an
HTTP error or inside the long-running operation): the step is named, and what the steps
before it made is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.errors import StepFailed
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import new_task_id
from tests.gcp.conftest import Gcp, leftovers

# (method the cloud refuses, step that fails, as an operation error?)
REFUSALS = [
    ("iam.projects.serviceAccounts.create", "Create machine identity", False),
    ("cloudresourcemanager.projects.setIamPolicy", "Allow leaving the group", False),
    ("iam.projects.roles.create", "Allow leaving the group", False),
    ("compute.firewalls.insert", "Deny inbound traffic", True),
    ("compute.images.getFromFamily", "Create instance template", False),
    ("compute.instanceTemplates.insert", "Create instance template", True),
    ("compute.regionInstanceGroupManagers.insert", "Create machine group", True),
    ("compute.regionInstanceGroupManagers.createInstances", "Start machines", True),
]


@pytest.mark.parametrize(("method", "step", "in_operation"), REFUSALS)
def test_a_refused_request_leaves_nothing(
    gcp: Gcp, workdir: Path, method: str, step: str, in_operation: bool
) -> None:
    (workdir / "a.txt").write_text("a")
    gcp.fake.fail(method, code=403, message=f"refused {method}", in_operation=in_operation)
    task_id = new_task_id("refused")
    spec = parse_spec({"cloud": "gcp", "machine": "s", "script": "#!/bin/sh\ntrue\n",
                       "storage": {"workdir": str(workdir)}})  # fmt: skip
    with pytest.raises(StepFailed) as info:
        lifecycle.create(spec, task_id=task_id)
    assert info.value.step == step and f"refused {method}" in str(info.value)
    assert info.value.undo_errors == []
    assert leftovers(gcp, task_id) == []
