"""The workstation's way into a task's volume: a transfer pod reached through the
API server's pod proxy, with real rclone on both ends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pulumi_iterative.clouds.k8s import transfer
from pulumi_iterative.clouds.k8s.api import Kube
from pulumi_iterative.clouds.k8s.names import ROLE_LABEL, Names
from pulumi_iterative.clouds.k8s.resources import claim
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


def test_the_transfer_pod_is_locked_down(kube: Kube, volume: Path) -> None:
    body = transfer.transfer_pod_body(NAMES, "tok")
    spec = body["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] > 0
    assert body["metadata"]["labels"][ROLE_LABEL] == "transfer"
    assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]] == [NAMES.claim]
    assert "--baseurl /tok" in spec["containers"][0]["command"][-1]


def test_only_the_session_token_opens_the_bucket_and_webdav_verbs_are_refused(
    cluster: FakeCluster, kube: Kube, volume: Path
) -> None:
    token = "A" * 32
    pod = transfer.start_transfer_pod(kube, NAMES, token)
    api = cluster.client()
    base = f"/api/v1/namespaces/work/pods/{pod}:8080/proxy"
    eventually(lambda: raw(api, "GET", f"{base}/{token}/")[0] == 200, "the transfer pod to serve")
    assert raw(api, "GET", f"{base}/{'B' * 32}/bucket/")[0] == 404
    assert raw(api, "PROPFIND", f"{base}/{token}/")[0] == 405  # as the real pod proxy
    transfer.remove_transfer_pods(kube, NAMES)
    eventually(lambda: not cluster.objects("pods"), "the pod to go")


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
