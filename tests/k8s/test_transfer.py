"""The workstation's way into a task's volume: a transfer pod reached through the
API server's pod proxy, with real rclone on both ends."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from pulumi_iterative.clouds.k8s import sigv4, transfer
from pulumi_iterative.clouds.k8s.api import Kube
from pulumi_iterative.clouds.k8s.names import ROLE_LABEL, Names
from pulumi_iterative.clouds.k8s.resources import claim
from pulumi_iterative.clouds.k8s.security import container_security_context, pod_security_context
from pulumi_iterative.clouds.k8s.sigv4 import SessionKey
from pulumi_iterative.errors import TransferError
from pulumi_iterative.storage import Rclone
from tests.k8s.fake import FakeCluster
from tests.k8s.helpers import eventually, leftovers, raw

NAMES = Names("train-abcdefgh12")


@pytest.fixture
def volume(cluster: FakeCluster, kube: Kube) -> Path:
    claim.create_claim(
        kube, NAMES, claim.claim_body(NAMES, parallelism=2, size_gb=1, storage_class="")
    )
    found = cluster.objects("persistentvolumeclaims")[0]
    return cluster.claim_dir("work", NAMES.claim, found["metadata"]["uid"])


def test_a_session_moves_files_both_ways_and_leaves_no_pod(
    cluster: FakeCluster, kube: Kube, volume: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "er" / "model.bin").write_bytes(os.urandom(2_500_000))
    (src / "a.txt").write_text("hello")
    with transfer.open_bucket(kube, NAMES) as remote:
        rclone = Rclone(remote)
        rclone.run("copy", str(src), remote.path("data"))
        rclone.write(remote.path("task.json"), b'{"x": 1}')
        assert json.loads(rclone.cat(remote.path("task.json"))) == {"x": 1}
        back = tmp_path / "back"
        rclone.download_dir(remote.path("data"), str(back))
    # the bucket is the claim's `bucket/` folder, which the task's pods mount
    assert (volume / "bucket" / "data" / "deep" / "er" / "model.bin").read_bytes() == (
        src / "deep" / "er" / "model.bin"
    ).read_bytes()
    assert (back / "a.txt").read_text() == "hello"
    eventually(lambda: not cluster.objects("pods"), "the transfer pod to go")
    assert leftovers(cluster, NAMES.task_id) == [f"persistentvolumeclaims/{NAMES.claim}"]
    proxied = cluster.api.requests(resource="pods/proxy")
    assert proxied and {e.user for e in proxied} == {"admin"}, "the caller's own credentials"
    assert not cluster.objects("secrets"), "the session's key went with its pod"


def test_the_transfer_pod_is_locked_down(kube: Kube, volume: Path) -> None:
    body = transfer.transfer_pod_body(NAMES, "iterative-x-transfer-abc")
    spec = body["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] > 0
    assert body["metadata"]["labels"][ROLE_LABEL] == "transfer"
    assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"][:1]] == [NAMES.claim]
    # the key comes from the pod's own Secret, never from its spec
    assert spec["volumes"][1]["secret"]["secretName"] == "iterative-x-transfer-abc"
    command = spec["containers"][0]["command"][-1]
    assert 'RCLONE_AUTH_KEY="$(cat key/auth)"' in command and "--auth-key" not in command


def test_only_the_session_key_opens_the_bucket(
    cluster: FakeCluster, kube: Kube, volume: Path, tmp_path: Path
) -> None:
    """The real `rclone serve s3` in the pod refuses requests without the session's
    signature or with another key's; the key is in the pod's Secret only."""
    key = SessionKey.new()
    pod = transfer.start_transfer_pod(kube, NAMES, key)
    api = cluster.client()
    base = f"/api/v1/namespaces/work/pods/{pod}:8080/proxy"
    host = transfer.api_host(kube)

    def signed(with_key: SessionKey, method: str, target: str) -> int:
        return raw(api, method, base + sigv4.presign(with_key, method, host, target, {}))[0]

    eventually(lambda: signed(key, "GET", "/") == 200, "the transfer pod to serve")
    assert signed(key, "PUT", "/bucket/a.txt") == 200
    assert raw(api, "GET", f"{base}/bucket/a.txt")[0] in (400, 403)  # anonymous
    assert signed(SessionKey.new(), "GET", "/bucket/a.txt") == 403  # another key
    assert signed(SessionKey(key.access_key, "x" * 40), "GET", "/") == 403  # a guessed secret
    assert raw(api, "PROPFIND", f"{base}/")[0] == 405  # as the real pod proxy
    stored = json.dumps([cluster.objects(p) for p in ("pods", "jobs", "configmaps", "events")])
    assert key.secret_key not in stored
    (secret,) = [s for s in cluster.objects("secrets") if s["metadata"]["name"] == pod]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    transfer.remove_transfer_pods(kube, NAMES)
    eventually(lambda: not cluster.objects("pods"), "the pod to go")
    assert not cluster.objects("secrets"), "the key goes with its pod"


def test_the_forwarder_refuses_a_local_caller_without_the_key(
    cluster: FakeCluster, kube: Kube, volume: Path, tmp_path: Path
) -> None:
    """Another process on the workstation finds the loopback port, not the key."""
    (tmp_path / "f.txt").write_text("x")
    with transfer.open_bucket(kube, NAMES) as remote:
        Rclone(remote).run("copyto", str(tmp_path / "f.txt"), remote.path("f.txt"))
        env = dict(remote.env)
        stranger = SessionKey.new()
        env["RCLONE_S3_ACCESS_KEY_ID"] = stranger.access_key
        env["RCLONE_S3_SECRET_ACCESS_KEY"] = stranger.secret_key
        intruder = Rclone(replace(remote, env=tuple(sorted(env.items()))))
        with pytest.raises(TransferError):
            intruder.run("cat", remote.path("f.txt"))
        anonymous = dict(env, RCLONE_S3_ACCESS_KEY_ID="", RCLONE_S3_SECRET_ACCESS_KEY="")
        with pytest.raises(TransferError):
            Rclone(replace(remote, env=tuple(sorted(anonymous.items())))).run(
                "cat", remote.path("f.txt")
            )
    proxied = cluster.api.requests(resource="pods/proxy")
    assert all("X-Amz-Signature" in e.query or not e.query for e in proxied)


def test_a_pod_that_never_serves_fails_the_session_and_is_removed(
    cluster: FakeCluster, kube: Kube
) -> None:
    # no claim: the transfer pod cannot mount it and never serves
    transfer.READY_DEADLINE, saved = 2.0, transfer.READY_DEADLINE
    try:
        with pytest.raises(Exception, match="transfer pod"), transfer.open_bucket(kube, NAMES):
            pass
    finally:
        transfer.READY_DEADLINE = saved
    eventually(lambda: not cluster.objects("pods"), "the pod to go")


def test_nested_sessions_share_one_pod_and_replace_it_if_it_ended(
    cluster: FakeCluster, kube: Kube, volume: Path
) -> None:
    """What a held `lifecycle.session` gives status polls: one transfer pod for all,
    each reuse costing one read of the pod; a pod that ended is replaced."""
    with transfer.open_bucket(kube, NAMES) as outer:
        for _ in range(3):
            before = len(cluster.api.requests())
            with transfer.open_bucket(kube, NAMES) as inner:
                assert inner == outer
                Rclone(inner).write(inner.path("x.txt"), b"x")
            reuse = [e for e in cluster.api.requests()[before:] if e.resource != "pods/proxy"]
            assert [(e.verb, e.resource) for e in reuse] == [("list", "pods")]
        (first,) = [p["metadata"]["name"] for p in cluster.objects("pods")]
        cluster.evict("work", first)
        eventually(lambda: not cluster._running_uids(), "the evicted pod to end")
        with transfer.open_bucket(kube, NAMES) as inner:
            assert Rclone(inner).cat(inner.path("x.txt")) == b"x"
    created = cluster.api.requests(verb="create", resource="pods")
    assert len(created) == 2
    eventually(lambda: not cluster.objects("pods"), "the pods to go")


def _machine_pod(node: str) -> dict:
    """A pod of the task's Job as the cluster has it: on a tainted spot node, writing
    into the volume once it is attached there."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{NAMES.job}-0-x", "labels": NAMES.labels("machine")},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [
                {
                    "key": "kubernetes.azure.com/scalesetpriority",
                    "operator": "Equal",
                    "value": "spot",
                    "effect": "NoSchedule",
                }
            ],
            "securityContext": pod_security_context(),
            "containers": [
                {
                    "name": "agent",
                    "image": "python:3.12-slim",
                    "command": ["/bin/sh", "-c", "echo trained > volume/bucket/model.txt"],
                    "securityContext": container_security_context(),
                    "volumeMounts": [{"name": "volume", "mountPath": "/pulumi-iterative/volume"}],
                    "workingDir": "/pulumi-iterative",
                }
            ],
            "volumes": [{"name": "volume", "persistentVolumeClaim": {"claimName": NAMES.claim}}],
        },
    }


def test_a_held_session_moves_its_pod_to_where_a_once_volume_is_needed(
    cluster: FakeCluster, kube: Kube
) -> None:
    """A ReadWriteOnce volume is attached to one node at a time. A session opened before
    the task's pod was placed must not keep that pod from starting (Multi-Attach): once
    the pod is on a node, the session's next use moves its transfer pod there."""
    claim.create_claim(
        kube, NAMES, claim.claim_body(NAMES, parallelism=1, size_gb=1, storage_class="")
    )
    with transfer.open_bucket(kube, NAMES, shared=False) as outer:
        (first,) = cluster.objects("pods")
        assert first["spec"]["nodeName"] == "ondemand-1"  # no task pod yet: anywhere
        kube.core.create_namespaced_pod("work", _machine_pod("spot-1"))
        eventually(
            lambda: [e for e in cluster.objects("events") if e["reason"] == "FailedAttachVolume"],
            "the task's pod to wait for the volume",
        )
        with transfer.open_bucket(kube, NAMES, shared=False) as inner:
            assert inner == outer  # the same session, its pod moved
            moved = [
                p
                for p in cluster.objects("pods")
                if p["metadata"]["name"] != first["metadata"]["name"]
                and p["metadata"]["labels"][ROLE_LABEL] == "transfer"
            ]
            assert [p["spec"]["nodeName"] for p in moved] == ["spot-1"]
            eventually(
                lambda: _phase(cluster, f"{NAMES.job}-0-x") == "Succeeded",
                "the task's pod to run once the volume is free",
            )
            assert Rclone(inner).cat(inner.path("model.txt")) == b"trained\n"
    eventually(
        lambda: (
            not [
                p
                for p in cluster.objects("pods")
                if p["metadata"]["labels"][ROLE_LABEL] == "transfer"
            ]
        ),
        "the transfer pods to go",
    )


def _phase(cluster: FakeCluster, name: str) -> str:
    found = [p for p in cluster.objects("pods") if p["metadata"]["name"] == name]
    return (found[0].get("status") or {}).get("phase", "") if found else ""


def test_a_held_session_lists_what_the_pods_wrote_since(
    cluster: FakeCluster, kube: Kube, volume: Path
) -> None:
    """The task's pods write into the volume beside the transfer pod's server; a session
    held across polls (`follow`: `lifecycle.session`, a fresh one) must see each new
    report and log at once, not a listing cached from its first poll."""
    status = volume / "bucket" / "status"
    status.mkdir(parents=True)
    (status / "start").write_text("s")
    with transfer.open_bucket(kube, NAMES, fresh=True) as remote:
        rclone = Rclone(remote)
        assert [e["Path"] for e in rclone.list(remote.path("status"))] == ["start"]
        (pod,) = cluster.objects("pods")
        assert "--dir-cache-time 0s" in pod["spec"]["containers"][0]["command"][-1]
        (status / "end").write_text("e")  # as a pod writes it: not through the session
        assert [e["Path"] for e in rclone.list(remote.path("status"))] == ["end", "start"]
        assert rclone.cat(remote.path("status", "end")) == b"e"
