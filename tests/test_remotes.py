"""A bucket's rclone remote reads back as what built it, for every cloud's spelling."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pulumi_iterative.clouds.aws import names as aws
from pulumi_iterative.clouds.azure import names as azure
from pulumi_iterative.clouds.gcp import names as gcp

Split = Callable[[str], tuple[str, str]]


@pytest.mark.parametrize(
    ("build", "split", "spelled"),
    [
        (aws.s3_root, aws.split_root, ":s3:"),
        (gcp.gcs_root, gcp.split_root, ":gcs:"),
        (azure.blob_root, azure.split_root, ":azureblob:"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "tasks/t-1", "a/b/c"])
def test_a_root_splits_back_into_its_bucket_and_prefix(
    build: Callable[[str, str], str], split: Split, spelled: str, prefix: str
) -> None:
    root = build("bucket-1", prefix)
    assert root.startswith(spelled + "bucket-1")
    assert split(root) == ("bucket-1", prefix)
    assert split(root + "/") == ("bucket-1", prefix)


@pytest.mark.parametrize(
    ("split", "kind"),
    [
        (aws.split_root, "is not an S3 remote"),
        (gcp.split_root, "is not a GCS remote"),
        (azure.split_root, "is not an Azure Blob remote"),
    ],
)
def test_a_root_of_another_cloud_is_refused_by_name(split: Split, kind: str) -> None:
    for root in (":other:bucket/x", "/local/folder"):
        with pytest.raises(ValueError, match=kind):
            split(root)


def test_keys_join_parts_without_doubled_or_empty_slashes() -> None:
    assert aws.key("pre/fix/", "/claims", "3.json") == "pre/fix/claims/3.json"
    assert gcp.key("", "task.json") == "task.json"
    assert azure.key("container", "", "logs/") == "container/logs"
