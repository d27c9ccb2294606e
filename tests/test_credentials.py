"""Cloud credentials never travel in plain `environment` (issue 9, point 7)."""

from __future__ import annotations

import pytest

from pulumi_iterative.credentials import CREDENTIAL_VARIABLES
from pulumi_iterative.errors import SpecError
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.spec import parse_spec

BASE = {"script": "#!/bin/sh\ntrue\n"}


@pytest.mark.parametrize("cloud", ["local", "aws"])
@pytest.mark.parametrize(
    "name",
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AZURE_CLIENT_SECRET",
        "KUBECONFIG",
    ],
)
def test_a_credential_in_plain_environment_is_refused_at_preview(cloud: str, name: str) -> None:
    raw = {**BASE, "cloud": cloud, "environment": {name: "", "EPOCHS": "3"}}
    result = TaskProvider().check({}, raw)
    (failure,) = result.failures
    assert failure.property == f"environment.{name}"
    assert "secret_environment" in failure.reason and "identity" in failure.reason


def test_a_glob_that_would_copy_credentials_is_refused() -> None:
    environ = {"AWS_SECRET_ACCESS_KEY": "caller-secret", "AWS_REGION": "us-east-1"}
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, "cloud": "aws", "environment": {"AWS_*": ""}}, environ=environ)
    (error,) = info.value.errors
    assert error.field == "environment.AWS_*"
    assert "AWS_SECRET_ACCESS_KEY" in error.message and "caller-secret" not in error.message


def test_the_same_names_are_fine_as_secrets_and_harmless_globs_pass() -> None:
    spec = parse_spec(
        {
            **BASE,
            "cloud": "local",
            "environment": {"MY_*": "", "AWS_REGION": "us-east-1"},
            "secret_environment": {"AZURE_CLIENT_SECRET": "s"},
        },
        environ={"MY_A": "1"},
    )
    assert dict(spec.environment) == {"MY_A": "1", "AWS_REGION": "us-east-1"}
    assert dict(spec.secret_environment) == {"AZURE_CLIENT_SECRET": "s"}


def test_every_cloud_is_covered() -> None:
    prefixes = {"AWS_", "GOOGLE_", "AZURE_", "KUBE"}
    assert all(any(v.startswith(p) for v in CREDENTIAL_VARIABLES) for p in prefixes)
