"""The caller's Role in the README is the least that works: a whole task (create,
status, logs, preemption, delete) runs as a user bound to nothing else, and every
permission in it is used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubernetes import client

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.k8s.permissions import CALLER_RULES, caller_role, caller_role_yaml
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.k8s.fake import FakeCluster, agent_host_env
from tests.k8s.helpers import eventually, leftovers

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_prints_the_role_the_tests_enforce() -> None:
    assert caller_role_yaml() in README.read_text()


@pytest.mark.timeout(240)
def test_a_task_runs_with_only_the_callers_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> None:
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        rbac = client.RbacAuthorizationV1Api(cluster.client())
        rbac.create_namespaced_role("work", caller_role("work"))
        rbac.create_namespaced_role_binding(
            "work",
            {
                "metadata": {"name": "alice-caller"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pulumi-iterative-caller",
                },
                "subjects": [{"kind": "User", "name": "alice"}],
            },
        )
        monkeypatch.setenv("KUBECONFIG", str(cluster.user_kubeconfig(tmp_path / "alice", "alice")))
        workdir = tmp_path / "project"
        workdir.mkdir()
        (workdir / "weights.bin").write_bytes(os.urandom(17 * 2**20))  # a multipart upload
        # The pod is a local process of the fake: it can wait for a file of the test's,
        # so the live log is read (pods/log) while the pod surely runs.
        release = tmp_path / "release"
        script = (
            f"#!/bin/sh\necho waiting for the test\nwhile [ ! -f {release} ]; do sleep 0.2; done\n"
            "mkdir -p out\necho done > out/x\n"
        )
        spec = parse_spec(
            {
                "cloud": "k8s",
                "machine": "s",
                "script": script,
                "storage": {"workdir": str(workdir), "output": "out"},
            }
        )
        ref = lifecycle.create(spec)
        eventually(
            lambda: any(
                k.startswith("pod/") and "waiting for the test" in v
                for k, v in lifecycle.read(ref).logs.items()
            ),
            "the script's line in the live pod log (status)",
            timeout=120,
        )
        whole = lifecycle.fetch_logs(ref)  # `pulumi-iterative logs`: the whole pod log
        assert any(k.startswith("pod/") and "waiting for the test" in v for k, v in whole.items())
        release.write_text("go")
        status = eventually(lambda: (s := lifecycle.read(ref)).done and s, "the task", timeout=120)
        assert status.state == State.SUCCEEDED
        lifecycle.stop(ref)
        assert lifecycle.delete(ref) == 1
        assert leftovers(cluster, ref.task_id) == []
        mine = cluster.api.requests(user="alice")
        denied = [f"{e.verb} {e.resource} {e.name}" for e in mine if e.code == 403]
        assert denied == []
        used = {(e.resource, e.verb) for e in mine}
        granted = {
            (r, v) for rule in CALLER_RULES for r in rule["resources"] for v in rule["verbs"]
        }
        assert granted - used == set(), "the README's role grants more than a task uses"
