"""GCS through fake-gcs-server and its strict front: the bucket as the backend makes it,
real rclone moving bytes with the project's own settings, and a machine's identity
limited to its bucket (or prefix) by the bucket's IAM policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pulumi_iterative.clouds.gcp import api
from pulumi_iterative.clouds.gcp.names import Names, gcs_root, remote_env
from pulumi_iterative.clouds.gcp.resources import bucket
from pulumi_iterative.errors import NotFound, TransferError
from pulumi_iterative.storage import Rclone, Remote
from tests.gcp.conftest import Gcp
from tests.gcp.fake_metadata import FakeMetadata

NAMES = Names("unit-abcdefgh12")


def rclone(root: str, extra: dict[str, str] | None = None) -> Rclone:
    return Rclone(Remote(root, tuple(sorted(remote_env().items()))), extra_env=extra)


def test_bucket_is_private_by_construction_and_made_once(gcp: Gcp) -> None:
    labels = NAMES.labels({"team": "ml"})
    bucket.create_bucket(gcp.project, NAMES.bucket, "us-east1", labels)
    bucket.create_bucket(gcp.project, NAMES.bucket, "us-east1", labels)  # a re-run: done
    inserts = [r for r in gcp.gcs.requests if r.verb == "POST" and r.path == "/storage/v1/b"]
    assert len(inserts) == 1
    made = api.storage(gcp.project).get_bucket(NAMES.bucket)
    assert made.iam_configuration.uniform_bucket_level_access_enabled is True
    assert made.iam_configuration.public_access_prevention == "enforced"
    assert made.labels == {"team": "ml", "pulumi-iterative-task": "unit-abcdefgh12"}


def test_rclone_moves_bytes_with_the_remote_settings(gcp: Gcp, tmp_path: Path) -> None:
    bucket.create_bucket(gcp.project, NAMES.bucket, "us-east1", {})
    env = remote_env()
    assert env["RCLONE_GCS_ENDPOINT"] == gcp.gcs.endpoint + "/storage/v1/"
    r = rclone(gcs_root(NAMES.bucket, "pre/fix"))
    r.write(r.remote.path("a/b.txt"), b"hello")
    assert r.cat(r.remote.path("a/b.txt")) == b"hello"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    r.run("copy", str(tmp_path / "up"), r.remote.path("up"))
    listed = {e["Path"]: e["Size"] for e in r.list(r.remote.path(), recursive=True)}
    assert listed["up/big.bin"] == 3 * 1024 * 1024 and listed["a/b.txt"] == 5
    blobs = [b.name for b in api.storage(gcp.project).bucket(NAMES.bucket).list_blobs()]
    assert sorted(blobs) == ["pre/fix/a/b.txt", "pre/fix/up/big.bin"]
    assert bucket.delete_objects(gcp.project, NAMES.bucket, "pre/fix/up") == 1
    bucket.delete_bucket(gcp.project, NAMES.bucket)
    bucket.delete_bucket(gcp.project, NAMES.bucket)  # missing is done
    with pytest.raises(NotFound):
        r.cat(r.remote.path("a/b.txt"))


def machine_metadata(gcp: Gcp, email: str) -> FakeMetadata:
    instance = {
        "name": NAMES.instance(0),
        "id": "1",
        "zone": "projects/123/zones/us-east1-b",
        "metadata": {"items": []},
    }
    return FakeMetadata(
        project=gcp.project,
        project_number="123",
        instance=instance,
        account=email,
        scopes=["https://www.googleapis.com/auth/devstorage.read_write"],
        tokens=gcp.fake.tokens,
    )


def as_machine(meta: FakeMetadata) -> dict[str, str]:
    """A machine's rclone: no anonymous switch, credentials from its metadata server."""
    return {
        "RCLONE_GCS_ANONYMOUS": "false",
        "GOOGLE_APPLICATION_CREDENTIALS": "",  # not the caller's: the machine has none
        "HOME": "/nonexistent",
        **meta.env(),
    }


def test_machine_identity_reaches_only_its_prefix(gcp: Gcp) -> None:
    from pulumi_iterative.clouds.gcp.resources import identity

    bucket.create_bucket(gcp.project, NAMES.bucket, "us-east1", {})
    email = identity.create_account(gcp.project, NAMES)
    meta = machine_metadata(gcp, email)
    try:
        mine = rclone(gcs_root(NAMES.bucket, "tasks/t1"), as_machine(meta))
        with pytest.raises(TransferError, match="403"):
            mine.write(mine.remote.path("x.txt"), b"before the grant")
        assert any(r.auth == f"Bearer {meta.token}" for r in gcp.gcs.requests)

        bucket.grant(gcp.project, NAMES.bucket, f"serviceAccount:{email}", prefix="tasks/t1")
        bucket.grant(gcp.project, NAMES.bucket, f"serviceAccount:{email}", prefix="tasks/t1")
        policy = (
            api.storage(gcp.project).bucket(NAMES.bucket).get_iam_policy(requested_policy_version=3)
        )
        granted = [b for b in policy.bindings if f"serviceAccount:{email}" in b["members"]]
        assert len(granted) == 1 and granted[0]["role"] == "roles/storage.objectUser"
        assert "tasks/t1/" in granted[0]["condition"]["expression"]
        mine.write(mine.remote.path("x.txt"), b"mine")
        assert mine.cat(mine.remote.path("x.txt")) == b"mine"
        other = rclone(gcs_root(NAMES.bucket, "tasks/t2"), as_machine(meta))
        with pytest.raises(TransferError, match="403"):
            other.write(other.remote.path("y.txt"), b"not mine")

        bucket.revoke(gcp.project, NAMES.bucket, f"serviceAccount:{email}")
        with pytest.raises(TransferError, match="403"):
            mine.write(mine.remote.path("z.txt"), b"after the revoke")
    finally:
        meta.close()
