"""How a GCE machine gets the agent: the stored install section and the wheel fetch.

The machine simulator uses the bootstrap's documented skip switch, so here the part it
skips is run on its own: the fetch lines exactly as stored in the startup script (only
the two /opt folders moved into a temp folder), with no credentials but the machine's
own token from a fake metadata server, which the GCS front holds to the bucket's IAM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel, lifecycle
from pulumi_iterative.agent.bootstrap import render_bootstrap
from pulumi_iterative.clouds.gcp.backend import VENV, WHEEL_DIR
from pulumi_iterative.clouds.gcp.backend import Backend as GcpBackend
from pulumi_iterative.clouds.gcp.names import Names
from pulumi_iterative.records import BootConfig
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import TaskRef
from tests.gcp.conftest import Gcp
from tests.gcp.fake_gcp import PROJECT_NUMBER
from tests.gcp.fake_metadata import FakeMetadata

GOLDEN = Path(__file__).parent / "golden"


def _fixed_ref() -> TaskRef:
    return TaskRef(
        task_id="train-abcdefgh12",
        cloud="gcp",
        region="us-east1",
        remote={"root": ":gcs:pulumi-iterative-train-abcdefgh12", "env": {}},
        parallelism=1,
        created=0.0,
        deadline=3600.0,
        extra={
            "project": "my-project",
            "bucket": "pulumi-iterative-train-abcdefgh12",
            "prefix": "",
            "own_bucket": True,
        },
    )


def test_rendered_gcp_bootstrap_matches_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    ref = _fixed_ref()
    config = BootConfig(ref.task_id, "gcp", ref.remote, "0.1.0")
    text = render_bootstrap(config, GcpBackend().install(ref))
    path = GOLDEN / "bootstrap-gcp-wheel.sh"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_released_agent_comes_from_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: True)
    install = GcpBackend().install(_fixed_ref())
    assert install.requirement == "pulumi-iterative==0.1.0"
    assert any(d.startswith("google-auth") for d in install.deps)
    assert not any("pulumi>" in d or "compute" in d for d in install.deps)
    assert install.fetch == ""
    assert "Upload agent" not in [s.name for s in GcpBackend().storage_steps(_fixed_ref())]


def test_unreleased_agent_is_fetched_with_the_machine_identity(
    gcp: Gcp, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    spec = parse_spec({"cloud": "gcp", "machine": "s", "script": "#!/bin/sh\ntrue\n"})
    ref = lifecycle.create(spec)
    names = Names(ref.task_id)
    startup = gcp.fake.templates[names.template]["properties"]["metadata"]["items"][0]
    assert startup["key"] == "startup-script"
    install = GcpBackend().install(ref)
    assert install.fetch in startup["value"]  # the lines below are the stored ones
    assert f"{WHEEL_DIR}/{agent_wheel.wheel_name()}" in startup["value"]
    for marker in ("ya29.", "Authorization: Bearer", "X-Goog-Signature", "private_key"):
        assert marker not in startup["value"]  # no token, no signed URL, no key

    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    fetch = install.fetch.replace(WHEEL_DIR, str(wheels)).replace(VENV, str(venv))
    instance = {
        "name": names.instance(0),
        "id": "42",
        "zone": "projects/x/zones/us-east1-b",
        "metadata": {"items": []},
    }
    meta = FakeMetadata(
        project=gcp.project,
        project_number=PROJECT_NUMBER,
        instance=instance,
        account=names.account_email(gcp.project),
        scopes=[],
        tokens=gcp.fake.tokens,
    )
    try:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            **meta.env(),
        }
        done = subprocess.run(
            ["/bin/sh", "-eu", "-c", fetch], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    finally:
        meta.close()
    assert (wheels / agent_wheel.wheel_name()).read_bytes() == agent_wheel.build_wheel()
    fetched = [
        r
        for r in gcp.gcs.requests
        if agent_wheel.wheel_name() in r.path and r.query.get("alt") == ["media"]
    ]
    assert fetched and all(r.auth == f"Bearer {meta.token}" for r in fetched)
    lifecycle.delete(ref)
