"""storage.container on Kubernetes: the task lives in an object store (S3 on moto here)
under <prefix>/<task id>; the pods get the store's credentials from the task's Secret,
the workstation uses the caller's own; no volume is made and the bucket stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.agent.bootstrap import SKIP_INSTALL_ENV
from pulumi_iterative.errors import SpecError
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.aws.conftest import Moto, moto, moto_server
from tests.k8s.fake import FakeCluster, agent_host_env, default_host_env
from tests.k8s.helpers import eventually, leftovers

__all__ = ["moto", "moto_server"]  # fixtures, found by pytest through this module
POD_SECRET = "pod-secret-" + "x" * 20


@pytest.mark.timeout(240)
def test_a_task_in_an_s3_container(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="team-bucket")
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        workdir = tmp_path / "project"
        workdir.mkdir()
        (workdir / "in.txt").write_text("input")
        spec = parse_spec(
            {
                "cloud": "k8s",
                "machine": "s",
                "script": "#!/bin/sh\nmkdir -p out\ncat in.txt > out/copy.txt\n",
                "storage": {
                    "workdir": str(workdir),
                    "output": "out",
                    "container": "s3:team-bucket/runs",
                    "container_opts": {
                        "endpoint": moto.endpoint,
                        "region": "us-east-1",
                        "access_key_id": "AKIAPODKEY",
                        "secret_access_key": POD_SECRET,
                    },
                },
            }
        )
        ref = lifecycle.create(spec)
        status = eventually(lambda: (s := lifecycle.read(ref)).done and s, "the task", timeout=120)
        assert status.state == State.SUCCEEDED, status.to_dict()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-bucket")["Contents"]]
        assert all(k.startswith(f"runs/{ref.task_id}/") for k in keys)
        assert not cluster.objects("persistentvolumeclaims")
        stored = json.dumps([cluster.objects(p) for p in ("jobs", "pods", "configmaps")])
        assert POD_SECRET not in stored and moto.caller.secret_key not in stored
        (secret,) = [s for s in cluster.objects("secrets") if ref.task_id in s["metadata"]["name"]]
        assert set(secret["data"]) == {"RCLONE_S3_ACCESS_KEY_ID", "RCLONE_S3_SECRET_ACCESS_KEY"}
        lifecycle.delete(ref)
        assert (workdir / "out" / "copy.txt").read_text() == "input"
        assert leftovers(cluster, ref.task_id) == []
        assert "Contents" not in s3.list_objects_v2(Bucket="team-bucket", Prefix="runs/")
        s3.head_bucket(Bucket="team-bucket")  # the user's bucket stays


@pytest.mark.parametrize(
    ("args", "field", "says"),
    [
        ({"spot": 0.5}, "spot", "no spot price"),
        ({"permission_set": "arn:aws:iam::1:role/x"}, "permission_set", "service account"),
        ({"machine": "huge"}, "machine", "unknown machine"),
        ({"storage": {"container": "bucket-only"}}, "storage.container", "<type>:<bucket>"),
        (
            {"storage": {"container_opts": {"endpoint": "x"}}},
            "storage.container_opts.endpoint",
            "storage_class",
        ),
        ({"preempt_interval": 5}, "preempt_interval", "local"),
    ],
)
def test_bad_input_is_refused_at_preview_naming_the_field(
    args: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec({"cloud": "k8s", "script": "#!/bin/sh\ntrue\n", **args})
    assert [e.field for e in refused.value.errors] == [field]
    assert says in refused.value.errors[0].message


@pytest.mark.timeout(240)
def test_a_failed_install_says_why_without_the_bucket(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the agent's rclone is installed a pod cannot reach the object store: the
    boot's report is the end of its log, the pod's termination message
    (FallbackToLogsOnError), and status shows its reason as an error event."""
    moto.client("s3").create_bucket(Bucket="team-bucket")
    host_env = {**default_host_env(), SKIP_INSTALL_ENV: "/nonexistent/python3"}
    with FakeCluster(tmp_path / "cluster", host_env=host_env) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        workdir = tmp_path / "project"
        workdir.mkdir()
        spec = parse_spec(
            {
                "cloud": "k8s",
                "machine": "s",
                "script": "#!/bin/sh\ntrue\n",
                "storage": {
                    "workdir": str(workdir),
                    "container": "s3:team-bucket/runs",
                    "container_opts": {"endpoint": moto.endpoint, "region": "us-east-1"},
                },
            }
        )
        ref = lifecycle.create(spec)

        def failure_said() -> list[str]:
            events = lifecycle.read(ref, with_logs=False).events
            return [e.message for e in events if e.kind == "error" and "failed (exit" in e.message]

        said = eventually(failure_said, "the failed boot's reason in status", timeout=120)
        assert any("bootstrap failed while installing the agent" in m for m in said), said
        lifecycle.delete(ref)
        assert leftovers(cluster, ref.task_id) == []
