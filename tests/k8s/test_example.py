"""examples/k8s as a user runs it: the Pulumi program's resource, then its task on the
fake cluster, and `pulumi-iterative run` end to end against the same fake."""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.spec import FIELDS, parse_spec
from pulumi_iterative.status import State
from tests.k8s.fake import FakeCluster, agent_host_env
from tests.k8s.helpers import eventually, leftovers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "k8s"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ.endswith("iterative:Task"):
            self.inputs = dict(args.inputs)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "k8s-example"
    shutil.copytree(EXAMPLE, copy)
    return copy


@pytest.fixture
def program_inputs(example: Path) -> dict[str, Any]:
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)
    pulumi.runtime.set_all_config({})

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(example / "__main__.py"), run_name="__main__")

    program()
    assert recorder.inputs, "the program declared no Task"
    return {k: v for k, v in recorder.inputs.items() if k in FIELDS}


@pytest.fixture
def machines_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path) -> Any:
    """The fake cluster whose pods run the agent of this checkout (the install skip)."""
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster-root", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield cluster


def test_example_program_is_a_valid_k8s_task(example: Path, program_inputs: dict) -> None:
    assert (example / "Pulumi.yaml").read_text().startswith("name: iterative-k8s-example")
    spec = parse_spec(program_inputs)
    assert spec.cloud == "k8s" and spec.storage.workdir == str(example)
    assert spec.storage.output == "results" and spec.is_spot


@pytest.mark.timeout(240)
def test_example_task_runs_on_the_fake_cluster(
    machines_cluster: FakeCluster, example: Path, program_inputs: dict
) -> None:
    spec = parse_spec(
        {**program_inputs, "environment": {"EPOCHS": "3", "SECONDS_PER_EPOCH": "0.5"}}
    )
    ref = lifecycle.create(spec)
    status = eventually(
        lambda: (s := lifecycle.read(ref, with_logs=False)).done and s, "the task", timeout=120
    )
    assert status.state == State.SUCCEEDED
    # spot: the pods went to the spot node, which the fake taints as AKS does
    (pod,) = [p for p in machines_cluster.objects("pods") if "-0-" in p["metadata"]["name"]]
    assert pod["spec"]["nodeName"] == "spot-1"
    lifecycle.delete(ref)
    assert "epoch 3 loss" in (example / "results" / "history.txt").read_text()
    assert (example / "results" / "model.txt").read_text().startswith("final loss")
    assert leftovers(machines_cluster, ref.task_id) == []


def run_cli(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; if it hangs, every thread's stack is in the failure
    (faulthandler answers SIGABRT), with all it printed."""
    with subprocess.Popen(
        [sys.executable, "-m", "pulumi_iterative.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    ) as cli:
        try:
            out, err = cli.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            cli.send_signal(signal.SIGABRT)
            out, err = cli.communicate()
            pytest.fail(f"the CLI hung for {timeout:.0f}s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cli.args, cli.returncode, out, err)


@pytest.mark.timeout(240)
def test_the_cli_runs_a_task_end_to_end(machines_cluster: FakeCluster, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "task.yaml").write_text(
        "cloud: k8s\nmachine: s\ntimeout: 10m\n"
        'script: |\n  #!/bin/sh\n  mkdir -p out\n  echo "index $TASK_INDEX" | tee out/done.txt\n'
        "storage:\n  workdir: .\n  output: out\n"
    )
    ran = run_cli(["-v", "run", str(project / "task.yaml")], timeout=200)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (project / "out" / "done.txt").read_text() == "index 0\n"
    assert "index 0" in ran.stdout + ran.stderr
    assert not [o for o in machines_cluster.objects("jobs")]
