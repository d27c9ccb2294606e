"""Azure tests: a strict fake Resource Manager and azurite on loopback, behind the real
azure-mgmt clients, azure-storage-blob and rclone.

The caller signs in the way a user does, through azure-identity's Azure CLI
credential: a stand-in `az` on PATH prints the access token the fake handed out
for the caller (AZURE_TOKEN_CREDENTIALS=AzureCliCredential narrows
DefaultAzureCredential to it, as azure-identity documents). The token is random per
test, so a scan can look for exactly it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.azure.azurite import Azurite
from tests.azure.fake_arm import SUBSCRIPTION, TENANT, FakeArm


@dataclass(frozen=True)
class Arm:
    fake: FakeArm
    caller_token: str

    @property
    def endpoint(self) -> str:
        return self.fake.endpoint


def _fake_az(folder: Path, token: str) -> None:
    """An `az` that answers `az account get-access-token` like the real CLI does."""
    folder.mkdir(parents=True, exist_ok=True)
    answer = {
        "accessToken": token,
        "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(time.time() + 3600)),
        "expires_on": int(time.time() + 3600),
        "subscription": SUBSCRIPTION,
        "tenant": TENANT,
        "tokenType": "Bearer",
    }
    script = folder / "az"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" != "account get-access-token" ]; then echo "az: not faked: $*" >&2; '
        "exit 2; fi\n"
        f"cat <<'EOF'\n{json.dumps(answer)}\nEOF\n"
    )
    script.chmod(0o755)


@pytest.fixture
def arm_polls() -> int:
    """InProgress answers per long-running operation (override per test module)."""
    return 0


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arm_polls: int) -> Iterator[Arm]:
    fake = FakeArm(polls=arm_polls)
    token = fake.grant()
    bindir = tmp_path / "caller-bin"
    _fake_az(bindir, token)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "RCLONE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("PULUMI_ITERATIVE_ARM_ENDPOINT", fake.endpoint)
    yield Arm(fake, token)
    fake.close()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite") / "azurite.log")
    yield server
    server.close()


@pytest.fixture
def blob(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azurite]:
    """azurite, empty, named to the backend and rclone as the Blob emulator."""
    monkeypatch.setenv("PULUMI_ITERATIVE_BLOB_ENDPOINT", azurite_server.endpoint)
    yield azurite_server
    azurite_server.reset()


@dataclass(frozen=True)
class Cloud:
    """Resource Manager and Blob storage together: a container made through ARM
    exists in the emulator, as in Azure."""

    arm: Arm
    blob: Azurite


@pytest.fixture
def cloud(arm: Arm, blob: Azurite) -> Cloud:
    def mirror(account: str, container: str, made: bool) -> None:
        service = blob.service()
        if made:
            if not service.get_container_client(container).exists():
                service.create_container(container)
        else:
            service.get_container_client(container).delete_container()

    arm.fake.container_hook = mirror
    return Cloud(arm, blob)
