"""Names, catalog and the machine side: pure, no cluster."""

from __future__ import annotations

import pytest

from pulumi_iterative.clouds.k8s import catalog
from pulumi_iterative.clouds.k8s.machine import K8sMachine
from pulumi_iterative.clouds.k8s.names import Names
from pulumi_iterative.task import new_task_id


def test_names_fit_kubernetes_limits_for_the_longest_task_id() -> None:
    task_id = new_task_id("a" * 30)
    assert len(task_id) == 41
    names = Names(task_id)
    assert len(f"{names.job}-999") <= 63  # an Indexed Job's pod hostname
    assert len(names.transfer_pod + "-xxxxx") <= 253
    assert all(len(v) <= 63 for v in names.labels("machine").values())
    assert names.selector == f"pulumi-iterative/task={task_id}"


@pytest.mark.parametrize(
    ("name", "cpu", "memory", "gpus", "product"),
    [
        ("m", "8", "32Gi", 0, ""),
        ("m+t4", "3", "12Gi", 1, "Tesla-T4"),
        ("xl+h100", "90", "700Gi", 8, "NVIDIA-H100-80GB-HBM3"),
        ("2cpu-4Gi", "2", "4Gi", 0, ""),
        ("4cpu-16Gi+2xl4", "4", "16Gi", 2, "NVIDIA-L4"),
    ],
)
def test_machines_resolve_to_requests(
    name: str, cpu: str, memory: str, gpus: int, product: str
) -> None:
    shape = catalog.resolve_machine(name)
    assert (shape.cpu, shape.memory, shape.gpus, shape.gpu_product) == (cpu, memory, gpus, product)


def test_unknown_machines_name_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of s, m, l, xl"):
        catalog.resolve_machine("huge")
    with pytest.raises(ValueError, match="GPU 'v99' is not one of"):
        catalog.resolve_machine("4cpu-16Gi+1xv99")


def test_regions_name_contexts() -> None:
    assert catalog.resolve_context("local") == ""
    assert catalog.resolve_context("us-east") == ""
    arn = "arn:aws:eks:us-east-1:123456789012:cluster/ml"
    assert catalog.CATALOG.native_region and catalog.CATALOG.native_region.match(arn)
    assert catalog.resolve_context(arn) == arn


def test_the_machine_side_reads_the_pod(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    monkeypatch.setenv("TASK_POD_NAME", "iterative-x-3-abcde")
    machine = K8sMachine({"task_id": "x"})
    assert (machine.index(), machine.instance_id()) == (3, "iterative-x-3-abcde")
    assert machine.home() == tmp_path / "scratch"
    assert machine.preemption_notice() is False
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(RuntimeError, match="JOB_COMPLETION_INDEX"):
        machine.index()
