"""Credentials are checked before the first step: a missing or unusable AWS login is
one clear error saying how to log in, and nothing is made or cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.errors import IterativeError, StepFailed
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.task import new_task_id
from tests.aws.conftest import Moto, leftovers


def spec(workdir: Path):  # type: ignore[no-untyped-def]
    return parse_spec(
        {"cloud": "aws", "script": "#!/bin/sh\ntrue\n", "storage": {"workdir": str(workdir)}}
    )


def test_no_credentials_are_said_first(
    moto: Moto, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    task_id = new_task_id("nocreds")
    with pytest.raises(IterativeError) as info:
        lifecycle.create(spec(workdir), task_id=task_id)
    message = str(info.value)
    assert not isinstance(info.value, StepFailed), message  # no step ran, no undo reported
    assert "no AWS credentials found" in message and "aws sso login" in message
    assert "AWS_PROFILE" in message and "AWS_ACCESS_KEY_ID" in message
    assert "cleanup" not in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.caller.access_key)  # to look around
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.caller.secret_key)
    assert leftovers(moto, task_id) == []


def test_a_profile_that_does_not_exist_is_named(
    moto: Moto, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(IterativeError) as info:
        lifecycle.create(spec(workdir))
    assert "no-such-profile" in str(info.value) and "aws sso login" in str(info.value)


def test_with_credentials_the_check_passes_and_names_the_caller(moto: Moto) -> None:
    from pulumi_iterative.clouds.aws.access import check_caller

    assert check_caller("us-east-1").startswith("arn:aws:")
