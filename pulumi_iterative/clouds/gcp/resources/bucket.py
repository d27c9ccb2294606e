"""The task's GCS bucket: private by construction, and the machine's access to it.

A bucket the task owns has uniform bucket-level access (no object ACLs at all) and
public access prevention enforced, in the task's region, labelled with the task.
The machine's service account gets `roles/storage.objectUser` on that bucket only
(a bucket-level binding, not a project-wide one); on a user's container it is
limited by an IAM condition to the task's prefix (plus listing the bucket, which
a listing needs and conditions cannot narrow).
"""

from __future__ import annotations

from typing import Any

from ....errors import NotFound
from ..api import GcpError, call, storage
from ..names import BUCKET_ROLE

BUCKET_DELETE_DEADLINE = 120.0  # a straggler's last write while the bucket is emptied


def create_bucket(project: str, name: str, location: str, labels: dict[str, str]) -> None:
    client = storage(project)
    try:
        call(client.get_bucket, name)
        return  # already made by an earlier try
    except NotFound:
        pass
    bucket = client.bucket(name)
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.labels = dict(labels)
    try:
        call(client.create_bucket, bucket, location=location)
    except GcpError as exc:
        if exc.status != 409:
            raise
        call(client.get_bucket, name)  # 409 for a name someone else owns: say so


def check_bucket(project: str, name: str) -> None:
    """An existing bucket (storage.container) is there and ours to write."""
    try:
        call(storage(project).get_bucket, name)
    except NotFound as exc:
        raise GcpError(
            f"storage.container: bucket {name!r} does not exist; create it or leave "
            "container empty to let the task make its own",
            404,
        ) from exc


def delete_objects(project: str, name: str, prefix: str = "") -> int:
    """Every object (and noncurrent version) under prefix; NotFound for a missing bucket."""
    bucket = storage(project).bucket(name)
    listed = prefix.rstrip("/") + "/" if prefix else None
    blobs = call(lambda: list(bucket.list_blobs(prefix=listed, versions=True)))
    for blob in blobs:
        try:
            call(blob.delete)
        except NotFound:
            continue
    return len(blobs)


def delete_bucket(project: str, name: str) -> None:
    """Empty it, then remove it; a write that lands meanwhile empties it again."""

    def empty_and_delete() -> None:
        delete_objects(project, name)  # NotFound when the bucket is gone: done
        storage(project).bucket(name).delete()

    try:
        call(empty_and_delete, retry=(409,), deadline=BUCKET_DELETE_DEADLINE)
    except NotFound:
        pass  # gone already: done


def _condition(bucket: str, prefix: str) -> dict[str, str] | None:
    if not prefix:
        return None
    root = f"projects/_/buckets/{bucket}"
    return {
        "title": "task prefix",
        "description": f"objects under {prefix}/ (and listing the bucket)",
        "expression": (
            f'resource.name.startsWith("{root}/objects/{prefix}/") || resource.name == "{root}"'
        ),
    }


def grant(project: str, name: str, member: str, prefix: str = "") -> None:
    """The machine's identity may read and write the task's objects, nothing else."""
    bucket = storage(project).bucket(name)
    policy = call(bucket.get_iam_policy, requested_policy_version=3)
    policy.version = 3
    wanted: dict[str, Any] = {"role": BUCKET_ROLE, "members": {member}}
    condition = _condition(name, prefix)
    if condition:
        wanted["condition"] = condition
    for binding in policy.bindings:
        same = binding.get("role") == BUCKET_ROLE and binding.get("condition") == condition
        if same and member in binding.get("members", ()):
            return  # granted by an earlier try
    policy.bindings.append(wanted)
    call(bucket.set_iam_policy, policy, retry=(409, 412))


def revoke(project: str, name: str, member: str) -> None:
    """Take the member out of the bucket's policy; a missing bucket is done."""
    bucket = storage(project).bucket(name)
    policy = call(bucket.get_iam_policy, requested_policy_version=3)
    kept = []
    changed = False
    for binding in policy.bindings:
        members = set(binding.get("members", ()))
        if member in members:
            changed = True
            members.discard(member)
        if members:
            kept.append({**binding, "members": members})
    if not changed:
        return
    policy.version = 3
    policy.bindings = kept
    call(bucket.set_iam_policy, policy, retry=(409, 412))
