"""The task's S3 bucket (private, encrypted, tagged), or a prefix in the user's bucket."""

from __future__ import annotations

import logging
from typing import Any

from ....errors import NotFound
from ..api import Aws, AwsError, call, exists_ok

log = logging.getLogger(__name__)

BUCKET_DELETE_DEADLINE = 120.0  # a bucket written to while it is being emptied


def create_bucket(aws: Aws, bucket: str, tags: list[dict[str, str]]) -> None:
    """A private bucket: public access blocked, encrypted at rest (SSE-S3), tagged, and
    incomplete multipart uploads aborted after a day."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if aws.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    exists_ok(aws.s3.create_bucket, ("BucketAlreadyOwnedByYou",), **kwargs)
    # A new bucket can be briefly invisible to the calls that follow.
    just_made = ("NoSuchBucket", "404")
    call(
        aws.s3.put_public_access_block,
        retry=just_made,
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    call(
        aws.s3.put_bucket_encryption,
        retry=just_made,
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    call(aws.s3.put_bucket_tagging, retry=just_made, Bucket=bucket, Tagging={"TagSet": tags})
    # An upload cut off mid-way (a preempted machine) leaves billed parts nobody sees.
    call(
        aws.s3.put_bucket_lifecycle_configuration,
        retry=just_made,
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "abort-incomplete-uploads",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )


def check_bucket(aws: Aws, bucket: str) -> None:
    """An existing bucket (storage.container) is there and ours to write."""
    try:
        call(aws.s3.head_bucket, Bucket=bucket)
    except NotFound as exc:
        raise AwsError(
            f"storage.container: bucket {bucket!r} does not exist; create it or leave "
            "container empty to let the task make its own",
            "NoSuchBucket",
        ) from exc


def delete_objects(aws: Aws, bucket: str, prefix: str) -> int:
    """Every object and version under prefix ("" = all); a missing bucket is NotFound."""
    paginator = aws.s3.get_paginator("list_object_versions")
    listed = prefix.rstrip("/") + "/" if prefix else ""
    removed = 0
    pages = call(lambda: list(paginator.paginate(Bucket=bucket, Prefix=listed)))
    batch: list[dict[str, str]] = []
    for page in pages:
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    for i in range(0, len(batch), 1000):
        chunk = batch[i : i + 1000]
        answer = call(
            aws.s3.delete_objects, Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise AwsError(
                f"DeleteObjects: {first.get('Code')}: {first.get('Message')} "
                f"({len(errors)} objects not deleted)",
                str(first.get("Code", "")),
            )
        removed += len(chunk)
    return removed


def delete_bucket(aws: Aws, bucket: str) -> None:
    """Empty it, then remove it; a straggler's last write (a machine still shutting
    down) empties again instead of failing the delete."""

    def empty_and_delete() -> None:
        delete_objects(aws, bucket, "")  # NotFound when the bucket is gone: done
        aws.s3.delete_bucket(Bucket=bucket)  # its errors are classified by the call below

    call(empty_and_delete, retry=("BucketNotEmpty",), deadline=BUCKET_DELETE_DEADLINE)
