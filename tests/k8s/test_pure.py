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


@pytest.mark.parametrize(
    ("text", "indexes"),
    [("", set()), ("0", {0}), ("0,3-5,7", {0, 3, 4, 5, 7}), ("2-3", {2, 3})],
)
def test_index_lists_as_a_job_status_writes_them(text: str, indexes: set[int]) -> None:
    from pulumi_iterative.clouds.k8s.resources.job import parse_indexes

    assert parse_indexes(text) == indexes


@pytest.mark.parametrize(
    ("state", "code", "exit_code"),
    [
        ("succeeded", 0, 0),
        ("failed", 3, 3),
        ("failed", -9, 137),
        ("failed", None, 70),
        ("timeout", -15, 124),
        ("budget", None, 125),
    ],
)
def test_the_pod_ends_with_the_scripts_code(state: str, code: int | None, exit_code: int) -> None:
    from pulumi_iterative.clouds.k8s.machine import script_exit_code

    assert script_exit_code(state, code) == exit_code
