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
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulumi_iterative import registry
from pulumi_iterative.clouds.azure.names import Names
from pulumi_iterative.clouds.azure.retail import ENDPOINT_ENV
from pulumi_iterative.storage import TASK_FILE
from tests.azure.azurite import Azurite, jwt
from tests.azure.fake_arm import CALLER, SUBSCRIPTION, TENANT, FakeArm
from tests.azure.fake_retail_prices import FakeRetailPrices
from tests.azure.simulator import MachineSimulator


@dataclass(frozen=True)
class Arm:
    fake: FakeArm
    caller_token: str  # for Resource Manager
    caller_storage_token: str  # for Blob storage (an Azure AD-shaped JWT)

    @property
    def endpoint(self) -> str:
        return self.fake.endpoint


def _fake_az(folder: Path, tokens: dict[str, str]) -> None:
    """An `az` that answers `az account get-access-token --resource R` like the real
    CLI does (azure-identity and rclone's Go SDK both run it), one token per resource."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for resource, token in tokens.items():
        answer = {
            "accessToken": token,
            "expiresOn": time.strftime(
                "%Y-%m-%d %H:%M:%S.000000", time.localtime(time.time() + 3600)
            ),
            "expires_on": int(time.time() + 3600),
            "subscription": SUBSCRIPTION,
            "tenant": TENANT,
            "tokenType": "Bearer",
        }
        cases.append(f"  {resource}|{resource}/) cat <<'EOF'\n{json.dumps(answer)}\nEOF\n  ;;")
    script = folder / "az"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" != "account get-access-token" ]; then echo "az: not faked: $*" >&2; '
        "exit 2; fi\n"
        'resource=""\n'
        'while [ $# -gt 0 ]; do [ "$1" = "--resource" ] && resource="$2"; shift; done\n'
        'case "$resource" in\n'
        + "\n".join(cases)
        + '\n  *) echo "ERROR: AADSTS500011: no token for resource $resource" >&2; exit 1;;\n'
        "esac\n"
    )
    script.chmod(0o755)


@pytest.fixture
def arm_polls() -> int:
    """InProgress answers per long-running operation (override per test module)."""
    return 0


@pytest.fixture
def retail_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRetailPrices]:
    """Azure's public price list, empty unless a test fills it (then the snapshot stands):
    a create never reaches out to the real one."""
    fake = FakeRetailPrices([])
    monkeypatch.setenv(ENDPOINT_ENV, fake.endpoint)
    yield fake
    fake.close()


@pytest.fixture
def arm(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arm_polls: int,
    iterative_home: Path,
    retail_prices: FakeRetailPrices,
) -> Iterator[Arm]:
    fake = FakeArm(polls=arm_polls)
    token, storage_token = fake.grant(), jwt(CALLER)
    bindir = tmp_path / "caller-bin"
    _fake_az(
        bindir, {"https://management.azure.com": token, "https://storage.azure.com": storage_token}
    )
    for name in list(os.environ):
        if name.startswith(("AZURE_", "RCLONE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("PULUMI_ITERATIVE_ARM_ENDPOINT", fake.endpoint)
    yield Arm(fake, token, storage_token)
    # The fake goes with the test: nothing is left to stop (a failed test's tasks would
    # otherwise be stopped against a closed endpoint, retrying for minutes).
    for ref in registry.all_refs():
        if ref.cloud == "azure":
            registry.forget(ref.task_id)
    fake.close()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite") / "azurite.log")
    yield server
    server.close()


@pytest.fixture
def blob(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azurite]:
    """azurite, empty, named to the backend and rclone as the Blob emulator, its
    certificate trusted by Go (rclone) and by Python's requests (azure-storage-blob)."""
    monkeypatch.setenv("PULUMI_ITERATIVE_BLOB_ENDPOINT", azurite_server.endpoint)
    monkeypatch.setenv("SSL_CERT_FILE", str(azurite_server.cert))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite_server.cert))
    yield azurite_server
    azurite_server.reset()


@dataclass(frozen=True)
class Cloud:
    """Resource Manager and Blob storage together: a container made through ARM
    exists in the emulator, as in Azure."""

    arm: Arm
    blob: Azurite


@pytest.fixture
def azure_cloud(arm: Arm, blob: Azurite) -> Cloud:
    def mirror(account: str, container: str, made: bool) -> None:
        service = blob.service()
        if made:
            if not service.get_container_client(container).exists():
                service.create_container(container)
        else:
            service.get_container_client(container).delete_container()

    arm.fake.container_hook = mirror
    return Cloud(arm, blob)


@pytest.fixture
def azure_simulator(azure_cloud: Cloud, tmp_path: Path) -> Iterator[MachineSimulator]:
    # The machines' PATH has no caller `az`: they sign in as their managed identity only.
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if "caller-bin" not in p
    )
    sim = MachineSimulator(
        azure_cloud.arm.fake, tmp_path / "machines", python=sys.executable, path=path
    )
    yield sim
    sim.close()


def leftovers(cloud: Cloud, task_id: str) -> list[str]:
    """Every object of the task still in the fake Resource Manager or in azurite."""
    names = Names(task_id)
    marks = (
        task_id,
        names.base.lower(),
        names.storage_account,
        names.leave_role,
        names.machines_role,
    )
    found = [
        f"{r['type']} {r['id']}"
        for rid, r in cloud.arm.fake.resources.items()
        if any(m in rid for m in marks)
        or task_id in json.dumps(r.get("tags") or {})
        or names.leave_role_name in json.dumps(r.get("properties") or {})
        or names.machines_role_name in json.dumps(r.get("properties") or {})
    ]
    service = cloud.blob.service()
    for container in service.list_containers():
        if any(m in container.name for m in marks):
            found.append(f"container {container.name}")
            continue
        for blob in service.get_container_client(container.name).list_blobs():
            if task_id in blob.name:
                found.append(f"blob {container.name}/{blob.name}")
    return found


def stored(cloud: Cloud, task_id: str) -> str:
    """Everything Azure keeps about the task outside its container, as one text: every
    resource and every request body the fake accepted (the custom data included), the
    activity log, and every blob but the task definition (the one private place for
    secrets, read by the machine with its own identity)."""
    fake = cloud.arm.fake
    parts: list[object] = [
        list(fake.resources.values()),
        list(fake.models.values()),
        [(r.method, r.path, r.query, r.body) for r in fake.requests],
        fake.activity,
    ]
    service = cloud.blob.service()
    for container in service.list_containers():
        client = service.get_container_client(container.name)
        for blob in client.list_blobs():
            parts.append(blob.name)
            if blob.name.endswith("/" + TASK_FILE) or blob.name == TASK_FILE:
                continue
            data = client.download_blob(blob.name).readall()
            parts.append(data.decode("utf-8", errors="replace"))
    return json.dumps(parts, default=str)
