"""azurite with the project's own rclone runner and the Blob remote the backend makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulumi_iterative.clouds.azure.names import blob_root, remote_env
from pulumi_iterative.storage import Rclone, Remote
from tests.azure.conftest import Cloud


def test_rclone_moves_bytes_with_the_callers_login_and_no_key(
    azure_cloud: Cloud, tmp_path: Path
) -> None:
    """The remote the backend makes (account + env_auth): rclone gets the caller's Azure
    AD token from `az`, over HTTPS, as against Azure."""
    blob = azure_cloud.blob
    blob.service().create_container("task-c")
    remote = Remote(blob_root("task-c", "pre/fix"), tuple(sorted(remote_env("acct").items())))
    rclone = Rclone(remote)
    rclone.write(remote.path("status", "m.json"), json.dumps({"state": "running"}).encode())
    assert json.loads(rclone.cat(remote.path("status", "m.json"))) == {"state": "running"}
    names = [b.name for b in blob.service().get_container_client("task-c").list_blobs()]
    assert names == ["pre/fix/status/m.json"]  # where the SDK sees it, under the prefix
    rclone.purge(remote.path())
    assert not list(blob.service().get_container_client("task-c").list_blobs())


def test_a_token_azure_ad_did_not_issue_is_refused(azure_cloud: Cloud) -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    class Forged:
        def get_token(self, *scopes: str, **kw: object) -> AccessToken:
            return AccessToken("not-a-jwt", 2**31)

    azure_cloud.blob.service().create_container("task-e")
    client = ContainerClient(azure_cloud.blob.endpoint, "task-e", credential=Forged())
    with pytest.raises(HttpResponseError) as refused:
        list(client.list_blobs())
    assert refused.value.status_code in (401, 403)


def test_on_azure_the_remote_holds_no_key_and_uses_the_runtime_identity() -> None:
    emulated = remote_env(
        "piabc", environ={"PULUMI_ITERATIVE_BLOB_ENDPOINT": "https://127.0.0.1:1/devstoreaccount1"}
    )
    assert emulated["RCLONE_AZUREBLOB_ENV_AUTH"] == "true"  # the same keyless path
    env = remote_env("piabc", environ={})
    assert env == {"RCLONE_AZUREBLOB_ACCOUNT": "piabc", "RCLONE_AZUREBLOB_ENV_AUTH": "true"}
    assert not any("KEY" in k or "SAS" in k for k in env)


def test_only_a_loopback_emulator_may_replace_blob_storage() -> None:
    with pytest.raises(ValueError, match="loopback"):
        remote_env("a", environ={"PULUMI_ITERATIVE_BLOB_ENDPOINT": "http://evil.example/x"})
