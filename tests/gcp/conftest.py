"""GCP tests: a strict fake of Compute Engine, IAM and Resource Manager, and
fake-gcs-server behind a strict front, both on loopback, driven by the real Google
clients (google-cloud-compute over REST, google-auth's session, google-cloud-storage)
and real rclone.

One FakeGcp and one FakeGcs per session; every test starts from `reset()`, with
the workstation's environment pointed at them: PULUMI_ITERATIVE_GCP_ENDPOINT (the
backend's emulator switch for compute, IAM and Resource Manager), STORAGE_EMULATOR_HOST
(google-cloud-storage's own), GOOGLE_CLOUD_PROJECT, and RCLONE_GCS_ANONYMOUS for
the workstation's rclone (it has no application default credentials here; machines
get none of this and use their metadata server's token).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.gcp.fake_gcp import PROJECT, FakeGcp
from tests.gcp.fake_gcs import FakeGcs


@dataclass(frozen=True)
class Gcp:
    fake: FakeGcp
    gcs: FakeGcs
    project: str = PROJECT


@pytest.fixture(scope="session")
def gcp_servers() -> Iterator[tuple[FakeGcp, FakeGcs]]:
    fake = FakeGcp()
    gcs = FakeGcs(fake)
    yield fake, gcs
    gcs.close()
    fake.close()


@pytest.fixture
def gcp(gcp_servers: tuple[FakeGcp, FakeGcs], monkeypatch: pytest.MonkeyPatch) -> Iterator[Gcp]:
    fake, gcs = gcp_servers
    fake.reset()
    gcs.reset()
    for name in list(os.environ):
        if name.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_", "RCLONE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PULUMI_ITERATIVE_GCP_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("RCLONE_GCS_ANONYMOUS", "true")
    yield Gcp(fake, gcs)
