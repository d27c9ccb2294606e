"""The backend through the lifecycle, on the fake: the API refusing each create rolls
everything back and names the step; what the cluster says (pending pods, scheduling
failures) reaches status and events; stop suspends the Job and keeps the volume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.agent.bootstrap import SKIP_INSTALL_ENV
from pulumi_iterative.clouds.k8s.machine import EXIT_TIMEOUT
from pulumi_iterative.errors import StepFailed
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.status import State, TaskStatus
from pulumi_iterative.task import new_task_id
from tests.k8s.fake import FakeCluster, agent_host_env
from tests.k8s.helpers import eventually, leftovers

# (verb, resource, matching requests let through) the API refuses -> the step that fails
REFUSALS = (
    ("create", "persistentvolumeclaims", 0, "Create volume"),
    ("create", "pods", 0, "Upload workdir"),  # the transfer pod
    ("create", "secrets", 0, "Upload workdir"),  # the transfer session's key
    ("create", "serviceaccounts", 0, "Create machine identity"),
    ("create", "rolebindings", 0, "Create machine identity"),
    ("create", "configmaps", 0, "Create task config"),
    ("create", "secrets", 1, "Create task secret"),  # after the session key's
    ("create", "jobs", 0, "Start job"),
)


@pytest.fixture
def cluster_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> Iterator[FakeCluster]:
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield cluster
        assert not cluster.errors


def _spec(tmp_path: Path, script: str = "#!/bin/sh\ntrue\n", **args: object) -> TaskSpec:
    workdir = tmp_path / "project"
    workdir.mkdir(exist_ok=True)
    (workdir / "a.txt").write_text("a")
    return parse_spec(
        {
            "cloud": "k8s",
            "machine": "s",
            "script": script,
            "storage": {"workdir": str(workdir)},
            **args,
        }
    )


def test_a_refused_create_rolls_back_and_names_the_step(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    for verb, resource, skip, step in REFUSALS:
        cluster_env.api.fail(verb, resource, 403, skip=skip)
        task_id = new_task_id("refused")
        with pytest.raises(StepFailed) as failed:
            lifecycle.create(_spec(tmp_path), task_id=task_id)
        assert failed.value.step == step, resource
        assert "Forbidden" in str(failed.value) and failed.value.undo_errors == []
        eventually(
            lambda t=task_id: not leftovers(cluster_env, t), f"nothing left after {resource}"
        )


def test_scheduling_failures_reach_status_and_events(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    ref = lifecycle.create(_spec(tmp_path, machine="m+h100"))  # no node has an H100

    def with_error() -> object:
        found = lifecycle.read(ref, with_logs=False)
        return found if any(e.kind == "error" for e in found.events) else None

    status = eventually(with_error, "a FailedScheduling event")
    assert isinstance(status, TaskStatus)
    errors = [e.message for e in status.events if e.kind == "error"]
    assert any(m.startswith("FailedScheduling: 0/2 nodes are available") for m in errors)
    assert status.state == State.QUEUED
    lifecycle.delete(ref)
    assert leftovers(cluster_env, ref.task_id) == []


def test_stop_suspends_the_job_and_keeps_the_volume(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    ref = lifecycle.create(_spec(tmp_path, "#!/bin/sh\necho up\nwhile true; do sleep 0.2; done\n"))
    eventually(lambda: "up" in "".join(lifecycle.read(ref).logs.values()), "the script to run")
    lifecycle.stop(ref)
    # the Job's pods have ended; the stop marker's transfer pod goes right after
    job_pods = [p for p in cluster_env.objects("pods") if "transfer" not in p["metadata"]["name"]]
    assert all(p["status"]["phase"] == "Failed" for p in job_pods)
    eventually(lambda: not cluster_env.live_processes(), "the transfer pod's process to end")
    (job,) = cluster_env.objects("jobs")
    assert job["spec"]["suspend"] is True
    assert lifecycle.read(ref, with_logs=False).state == State.STOPPED
    assert [c["metadata"]["name"] for c in cluster_env.objects("persistentvolumeclaims")]
    lifecycle.delete(ref)
    assert leftovers(cluster_env, ref.task_id) == []


def _job_conditions(cluster: FakeCluster) -> set[str]:
    (job,) = cluster.objects("jobs")
    return {c["type"] for c in job["status"].get("conditions") or [] if c["status"] == "True"}


def _exit_codes(cluster: FakeCluster) -> list[int]:
    """The exit codes of the Job's pods (not the transfer pods), oldest first."""
    pods = sorted(
        (p for p in cluster.objects("pods") if "transfer" not in p["metadata"]["name"]),
        key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"],
    )
    return [
        s["state"]["terminated"]["exitCode"]
        for p in pods
        for s in p["status"].get("containerStatuses") or []
        if (s.get("state") or {}).get("terminated")
    ]


def test_a_failing_script_fails_its_pod_and_the_index_is_retried(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    # the first try leaves a mark in the workdir (its final checkpoint keeps it) and fails
    script = (
        "#!/bin/sh\nif [ -f tried ]; then echo second try; mkdir -p out; echo ok > out/x; "
        "exit 0; fi\ntouch tried\nexit 3\n"
    )
    ref = lifecycle.create(
        _spec(tmp_path, script, storage={"workdir": str(tmp_path / "project"), "output": "out"})
    )
    eventually(lambda: "Complete" in _job_conditions(cluster_env), "the Job to complete")
    assert _exit_codes(cluster_env) == [3, 0]  # backoffLimitPerIndex retried the index
    status = lifecycle.read(ref)
    assert status.state == State.SUCCEEDED, status
    assert "second try" in "".join(status.logs.values())
    before = len(cluster_env.api.requests(verb="create", resource="pods"))
    assert lifecycle.delete(ref) > 0
    assert (tmp_path / "project" / "out" / "x").read_text() == "ok\n"
    # the final cost's read and the pull share one transfer pod
    assert len(cluster_env.api.requests(verb="create", resource="pods")) == before + 1
    assert leftovers(cluster_env, ref.task_id) == []


def test_a_script_that_keeps_failing_fails_the_job_and_the_task(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    ref = lifecycle.create(_spec(tmp_path, "#!/bin/sh\nexit 7\n"))
    eventually(lambda: "Failed" in _job_conditions(cluster_env), "the Job to fail")
    assert _exit_codes(cluster_env) == [7, 7]  # one retry, then the index fails
    assert lifecycle.read(ref, with_logs=False).state == State.FAILED
    lifecycle.delete(ref)
    assert leftovers(cluster_env, ref.task_id) == []


def test_a_timeout_fails_the_index_without_a_retry(
    cluster_env: FakeCluster, tmp_path: Path
) -> None:
    ref = lifecycle.create(_spec(tmp_path, "#!/bin/sh\nsleep 600\n", timeout=3))
    eventually(lambda: "Failed" in _job_conditions(cluster_env), "the Job to fail", 60)
    assert _exit_codes(cluster_env) == [EXIT_TIMEOUT]  # the policy's FailIndex: no retry
    assert lifecycle.read(ref, with_logs=False).state == State.TIMEOUT
    lifecycle.delete(ref)
    assert leftovers(cluster_env, ref.task_id) == []


def test_a_broken_install_reports_each_try_and_fails_the_job(
    cluster_env: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bootstrap fails before the agent runs: each pod leaves a failed report of
    its index with its boot log in the volume, exits non-zero, and the task is failed
    only once the Job has given up on the index."""
    monkeypatch.setitem(cluster_env.host_env, SKIP_INSTALL_ENV, "/nonexistent/python3")
    ref = lifecycle.create(_spec(tmp_path))
    eventually(lambda: "Failed" in _job_conditions(cluster_env), "the Job to fail")
    assert _exit_codes(cluster_env) == [127, 127]  # one retry, then the index failed
    status = lifecycle.read(ref)
    assert status.state == State.FAILED, status
    assert [m.index for m in status.machines] == [0, 0]
    for boot in status.machines:
        assert boot.state == State.FAILED and "installing the agent" in boot.reason
        assert "is not importable" in status.logs[boot.machine]
    lifecycle.delete(ref)
    assert leftovers(cluster_env, ref.task_id) == []
