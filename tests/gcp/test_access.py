"""The caller's Google login is checked before the first step: missing or unusable
credentials are one clear error saying how to log in, and nothing is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.errors import IterativeError, StepFailed
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import new_task_id
from tests.gcp.conftest import Gcp, leftovers


def _create(workdir: Path, task_id: str) -> IterativeError:
    spec = parse_spec(
        {"cloud": "gcp", "script": "#!/bin/sh\ntrue\n", "storage": {"workdir": str(workdir)}}
    )
    with pytest.raises(IterativeError) as info:
        lifecycle.create(spec, task_id=task_id)
    assert not isinstance(info.value, StepFailed), info.value  # no step ran
    return info.value


def test_no_credentials_are_said_first(
    gcp: Gcp, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = gcp.fake.endpoint
    monkeypatch.delenv("PULUMI_ITERATIVE_GCP_ENDPOINT")  # as on a workstation
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    task_id = new_task_id("nocreds")
    error = _create(workdir, task_id)
    assert "no Google Cloud credentials found" in str(error)
    assert "gcloud auth application-default login" in str(error)
    monkeypatch.setenv("PULUMI_ITERATIVE_GCP_ENDPOINT", endpoint)
    assert leftovers(gcp, task_id) == []


def test_a_login_that_cannot_be_refreshed_is_said_first(
    gcp: Gcp, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_ITERATIVE_GCP_ENDPOINT")
    # The fixture's login has a token endpoint nobody answers on (loopback port 9).
    error = _create(workdir, new_task_id("stale"))
    assert "login" in str(error) and gcp.caller_secrets[0] not in str(error)
