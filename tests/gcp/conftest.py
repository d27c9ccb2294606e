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

import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gcp.fake_gcp import PROJECT, FakeGcp
from tests.gcp.fake_gcs import FakeGcs
from tests.gcp.simulator import MachineSimulator


@dataclass(frozen=True)
class Gcp:
    fake: FakeGcp
    gcs: FakeGcs
    caller_secrets: tuple[str, ...] = ()  # the caller's credentials: never stored anywhere
    project: str = PROJECT


@pytest.fixture(scope="session")
def gcp_servers() -> Iterator[tuple[FakeGcp, FakeGcs]]:
    fake = FakeGcp()
    gcs = FakeGcs(fake)
    yield fake, gcs
    gcs.close()
    fake.close()


@pytest.fixture
def gcp(
    gcp_servers: tuple[FakeGcp, FakeGcs], monkeypatch: pytest.MonkeyPatch, iterative_home: Path
) -> Iterator[Gcp]:
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
    # The caller's own credentials, as gcloud leaves them: must never reach the cloud.
    refresh, client_secret = "1//caller-" + secrets.token_urlsafe(32), secrets.token_urlsafe(18)
    adc = iterative_home / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "caller.apps.googleusercontent.com",
                "client_secret": client_secret,
                "refresh_token": refresh,
                "token_uri": "http://127.0.0.1:9/token",  # never anywhere but loopback
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    yield Gcp(fake, gcs, (refresh, client_secret))


@pytest.fixture
def gcp_simulator(gcp: Gcp, tmp_path: Path) -> Iterator[MachineSimulator]:
    sim = MachineSimulator(gcp.fake, gcp.gcs, tmp_path / "machines", python=sys.executable)
    yield sim
    sim.close()


def leftovers(gcp: Gcp, task_id: str) -> list[str]:
    """Every object of the task still in the fakes, found through the APIs' own state."""
    found: list[str] = []
    with gcp.fake.lock:
        found += [f"template {n}" for n in gcp.fake.templates if task_id in n]
        found += [f"firewall {n}" for n in gcp.fake.firewalls if task_id in n]
        found += [f"group {k}" for k in gcp.fake.groups if task_id in k]
        found += [f"instance {k}" for k in gcp.fake.instances if task_id in k]
        from pulumi_iterative.clouds.gcp.names import Names

        account = Names(task_id).account_id
        found += [f"service account {e}" for e in gcp.fake.service_accounts if account in e]
        found += [
            f"project binding {b['role']} {m}"
            for b in gcp.fake.policy["bindings"]
            for m in b["members"]
            if account in m or task_id in json.dumps(b.get("condition", {}))
        ]
    from pulumi_iterative.clouds.gcp.api import storage

    client = storage(PROJECT)
    for bucket in client.list_buckets():
        if task_id in bucket.name:
            found.append(f"bucket {bucket.name}")
        found += [
            f"object {bucket.name}/{b.name}" for b in bucket.list_blobs() if task_id in b.name
        ]
        policy = gcp.gcs.policies.get(bucket.name) or {"bindings": []}
        found += [
            f"bucket binding {bucket.name} {m}"
            for b in policy["bindings"]
            for m in b["members"]
            if account in m
        ]
    return found


def stored(gcp: Gcp) -> str:
    """Everything the fakes keep outside the buckets' objects: templates (startup
    scripts), instances (metadata, labels), groups, firewalls, service accounts, the
    project's and the buckets' IAM policies, bucket metadata; as one text to scan."""
    with gcp.fake.lock:
        state = {
            "templates": gcp.fake.templates,
            "instances": gcp.fake.instances,
            "groups": {k: vars(g) for k, g in gcp.fake.groups.items()},
            "firewalls": gcp.fake.firewalls,
            "service_accounts": gcp.fake.service_accounts,
            "roles": gcp.fake.roles,
            "policy": gcp.fake.policy,
            "operations": gcp.fake.operations,
        }
        text = json.dumps(state, default=str)
    return text + json.dumps({"buckets": gcp.gcs.extras, "policies": gcp.gcs.policies})
