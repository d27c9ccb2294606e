"""AWS names are validated at check time (preview), with the choices; no cloud call."""

from __future__ import annotations

import pytest

from pulumi_iterative import catalog
from pulumi_iterative.errors import SpecError
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.spec import parse_spec

BASE = {"cloud": "aws", "script": "#!/bin/sh\ntrue\n"}


@pytest.mark.parametrize(
    ("field", "value", "choice"),
    [
        ("machine", "huge", "m+t4"),
        ("machine", "m+tpu", "xl+h100"),
        ("region", "mars-north", "eu-west"),
        ("region", "us-east1", "us-west"),  # a GCP-shaped region is not an AWS one
        ("image", "windows", "nvidia"),
        ("image", "ami-xyz", "ubuntu"),
    ],
)
def test_unknown_names_fail_at_check_with_the_choices(field: str, value: str, choice: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, field: value})
    (error,) = info.value.errors
    assert error.field == field
    assert value in error.message and choice in error.message and "choose one of" in error.message
    # The provider's check reports the same, naming the field, before anything is created.
    result = TaskProvider().check({}, {**BASE, field: value})
    assert [(f.property, f.reason) for f in result.failures] == [(field, error.message)]


@pytest.mark.parametrize(
    ("machine", "types"),
    [
        ("m", ("m7i.2xlarge", "m6i.2xlarge", "m5.2xlarge")),
        ("m+t4", ("g4dn.xlarge",)),
        ("m+k80", ("g4dn.xlarge",)),  # the old name resolves to the nearest current part
        ("m+v100", ("g5.xlarge", "g5.2xlarge")),
        ("c7g.large", ("c7g.large",)),  # a native instance type as is
    ],
)
def test_machines_resolve_to_types_with_fallbacks(machine: str, types: tuple[str, ...]) -> None:
    parse_spec({**BASE, "machine": machine})
    assert catalog.resolve_machine("aws", machine).types == types


@pytest.mark.parametrize(
    ("region", "native"),
    [
        ("us-east", "us-east-1"),
        ("us-west", "us-west-2"),
        ("eu-north", "eu-north-1"),
        ("eu-west", "eu-west-1"),
        ("ap-southeast-2", "ap-southeast-2"),
    ],
)
def test_regions_resolve(region: str, native: str) -> None:
    parse_spec({**BASE, "region": region})
    assert catalog.resolve_region("aws", region) == native


def test_images_resolve_to_owner_and_pattern_or_ami() -> None:
    assert catalog.resolve_image("aws", "ubuntu").startswith("099720109477:ubuntu/images/")
    assert catalog.resolve_image("aws", "nvidia").startswith("898082745236:")
    assert catalog.resolve_image("aws", "ami-0123456789abcdef0") == "ami-0123456789abcdef0"
    assert catalog.resolve_image("aws", "123456789012:my-image-*") == "123456789012:my-image-*"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"permission_set": "my-role"}, "permission_set"),
        ({"storage": {"container": "b", "container_opts": {"x": "y"}}}, "storage.container_opts"),
        ({"preempt_interval": 5}, "preempt_interval"),
    ],
)
def test_aws_only_rules_fail_at_preview(extra: dict, field: str) -> None:
    """The cloud's own rules (clouds/aws/rules.py) run at check, naming the field."""
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, **extra}, check_paths=False)
    assert [e.field for e in info.value.errors] == [field]
    result = TaskProvider().check({}, {**BASE, **extra})
    assert [f.property for f in result.failures] == [field]


def test_gpu_machine_with_a_driverless_image_warns_at_preview(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pulumi_iterative.clouds.aws.rules import gpu_without_driver

    assert "no NVIDIA driver" in gpu_without_driver(parse_spec({**BASE, "machine": "m+t4"}))
    assert gpu_without_driver(parse_spec({**BASE, "machine": "m+t4", "image": "nvidia"})) == ""
    assert gpu_without_driver(parse_spec({**BASE, "machine": "m"})) == ""
    with caplog.at_level("WARNING", logger="pulumi_iterative"):
        result = TaskProvider().check({}, {**BASE, "machine": "g5.xlarge"})
    assert result.failures == []  # a warning, not an error
    assert any("image 'nvidia'" in r.getMessage() for r in caplog.records)
