"""How a pod gets the agent: a released version from PyPI by its pin, an unreleased one
from the wheel in the task's ConfigMap, mounted beside the bootstrap (no download, no
credential). The rendered bootstrap is a golden file."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel
from pulumi_iterative.agent.bootstrap import render_bootstrap
from pulumi_iterative.clouds.k8s.backend import Backend
from pulumi_iterative.clouds.k8s.names import POD_HOME, TASK_DIR, Names
from pulumi_iterative.records import BootConfig
from pulumi_iterative.task import TaskRef
from tests.k8s.fake import FakeCluster

GOLDEN = Path(__file__).parent / "golden"


def _fixed_ref() -> TaskRef:
    return TaskRef(
        task_id="train-abcdefgh12",
        cloud="k8s",
        region="local",
        remote={"root": "volume/bucket", "env": {}},
        parallelism=1,
        created=0.0,
        deadline=3600.0,
        extra={"context": "fake", "namespace": "work"},
    )


def test_rendered_k8s_bootstrap_matches_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    ref = _fixed_ref()
    config = BootConfig(ref.task_id, "k8s", ref.remote, "0.1.0")
    text = render_bootstrap(config, Backend().install(ref))
    path = GOLDEN / "bootstrap-k8s-wheel.sh"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_released_agent_comes_from_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: True)
    assert Backend().install(_fixed_ref()).requirement == "pulumi-iterative==0.1.0"


def test_an_unreleased_agent_is_in_the_configmap_the_pod_mounts(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    from pulumi_iterative.spec import parse_spec

    ref = _fixed_ref()
    spec = parse_spec({"cloud": "k8s", "script": "#!/bin/sh\ntrue\n"})
    steps = {s.name: s for s in Backend().machine_steps(ref, spec, "#!/bin/sh\n")}
    steps["Create task config"].do()
    (found,) = cluster.objects("configmaps")
    wheel = agent_wheel.wheel_name()
    assert base64.b64decode(found["binaryData"][wheel]) == agent_wheel.build_wheel()
    requirement = Backend().install(ref).requirement
    assert requirement == f"{POD_HOME}/{TASK_DIR}/{wheel}"
    assert found["metadata"]["name"] == Names(ref.task_id).config_map
