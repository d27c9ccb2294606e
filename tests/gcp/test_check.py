"""GCP's rules at check time (preview): names, identity, labels; no SDK, no cloud call."""

from __future__ import annotations

import pytest

from pulumi_iterative import catalog
from pulumi_iterative.clouds.gcp.catalog import split_location, split_machine
from pulumi_iterative.errors import SpecError
from pulumi_iterative.spec import parse_spec

BASE = {"cloud": "gcp", "script": "#!/bin/sh\ntrue\n"}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("machine", "m+tpu", "choose one of"),
        ("region", "us-east-1", "choose one of"),  # an AWS-shaped region is not a GCP one
        ("image", "ami-0123456789abcdef0", "choose one of"),
        ("permission_set", "arn:aws:iam::123456789012:instance-profile/x", "service account"),
        ("permission_set", "1234-compute@developer.gserviceaccount.com", "default compute"),
        ("tags", {"Team": "ml"}, "lowercase"),
        ("tags", {"team": "Machine Learning"}, "lowercase"),
        ("storage", {"container": "googlebucket"}, "not a GCS bucket"),
        ("storage", {"container": "bucket", "container_opts": {"a": "b"}}, "not used on gcp"),
        ("preempt_interval", 30, "local' only"),
    ],
)
def test_bad_input_fails_at_check_naming_the_field(field: str, value: object, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, field: value})
    assert any(words in e.message for e in info.value.errors), info.value.errors
    assert all(e.field.split(".")[0] in (field, "storage") for e in info.value.errors)


def test_good_names_resolve() -> None:
    parse_spec({**BASE, "region": "us-east1-c", "machine": "m+t4", "image": "nvidia"})
    parse_spec({**BASE, "permission_set": "trainer@my-proj.iam.gserviceaccount.com"})
    assert catalog.resolve_region("gcp", "eu-west") == "europe-west1"
    assert catalog.resolve_machine("gcp", "m").types == ("n2-standard-8", "e2-standard-8")
    assert catalog.resolve_machine("gcp", "m+v100").types == ("g2-standard-8",)  # old name
    assert split_machine("n1-standard-4+nvidia-tesla-t4*2") == (
        "n1-standard-4",
        "nvidia-tesla-t4",
        2,
    )
    assert split_location("us-east1-c") == ("us-east1", "us-east1-c")
    assert split_location("us-east1") == ("us-east1", "")
