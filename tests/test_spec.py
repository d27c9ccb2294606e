"""TaskSpec validation: every bad field is named with its fix; nothing else escapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulumi_iterative.errors import SpecError
from pulumi_iterative.spec import FIELDS, TaskSpec, parse_spec

GOOD = {"cloud": "local", "script": "python train.py"}


def errors_for(raw: dict, **kw) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw, **kw)
    return {e.field: e.message for e in info.value.errors}


def test_defaults_and_normalization(tmp_path: Path) -> None:
    spec = parse_spec(
        {**GOOD, "storage": {"workdir": ".", "output": "results/"}}, base_dir=tmp_path, environ={}
    )
    assert spec.script == "#!/bin/sh\npython train.py\n"  # a plain command gets a shebang
    assert spec.region == "local" and spec.machine == "m" and spec.spot == -1
    assert spec.parallelism == 1 and spec.timeout == 24 * 3600
    assert spec.storage.workdir == str(tmp_path.resolve())
    assert spec.storage.output == "results"


def test_round_trip_through_plain_data_with_floats(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            **GOOD,
            "parallelism": 3,
            "timeout": "1h30m",
            "spot": 0,
            "tags": {"team": "ml"},
            "environment": {"EPOCHS": 8},
            "storage": {"workdir": str(tmp_path), "exclude": ["*.tmp"]},
        },
        environ={},
    )
    assert spec.timeout == 5400 and dict(spec.environment) == {"EPOCHS": "8"}
    data = spec.to_dict()
    # Pulumi sends integers back as floats.
    data["parallelism"], data["timeout"] = 3.0, 5400.0
    assert TaskSpec.from_dict(data) == spec


def test_environment_inherits_and_expands_globs() -> None:
    environ = {"HF_TOKEN": "abc", "MY_A": "1", "MY_B": "2", "OTHER": "x"}
    spec = parse_spec(
        {**GOOD, "environment": {"HF_TOKEN": "", "MY_*": "", "SET": "v"}}, environ=environ
    )
    assert dict(spec.environment) == {"HF_TOKEN": "abc", "MY_A": "1", "MY_B": "2", "SET": "v"}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cloud", "awz", "choose one of"),
        ("region", "mars-1", "choose one of"),
        ("machine", "huge", "choose one of"),
        ("image", "windows", "choose one of"),
        ("spot", -2, "-1 for on-demand"),
        ("spot", "cheap", "expected a number"),
        ("parallelism", 0, "from 1 to 1000"),
        ("parallelism", 2.5, "from 1 to 1000"),
        ("timeout", "soon", "duration like"),
        ("timeout", -5, "whole seconds"),
        ("disk_size", 0, "image default"),
        ("disk_size", -7, "-1 for the image"),
        ("name", "My Task", "lowercase"),
        ("tags", ["a"], "mapping"),
        ("environment", {"1BAD": "x"}, "valid variable name"),
        ("environment", {"TASK_INDEX": "3"}, "set by the agent"),
        ("script", "", "required"),
        ("preempt_interval", -1, "seconds"),
        ("bogus", 1, "unknown argument"),
    ],
)
def test_bad_field_is_named_with_a_fix(field: str, value, words: str) -> None:
    errors = errors_for({**GOOD, field: value}, environ={})
    key = next(k for k in errors if k == field or k.startswith(field + "."))
    assert words in errors[key]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    errors = errors_for(
        {
            "cloud": "local",
            "spot": -3,
            "parallelism": 0,
            "storage": {"workdir": str(tmp_path / "missing"), "output": "../x"},
        },
        environ={},
    )
    assert {"spot", "parallelism", "script", "storage.workdir", "storage.output"} <= set(errors)
    assert "create it" in errors["storage.workdir"]


def test_cloud_is_required_with_the_config_hint() -> None:
    assert "pulumi config set iterative:cloud" in errors_for({"script": "x"})["cloud"]


def test_stack_defaults_fill_only_missing_fields() -> None:
    spec = parse_spec(
        {"script": "x", "machine": "l"},
        defaults={"cloud": "local", "machine": "s", "parallelism": "2"},
        environ={},
    )
    assert (spec.cloud, spec.machine, spec.parallelism) == ("local", "l", 2)


def test_secret_and_plain_environment_may_not_share_a_name() -> None:
    errors = errors_for(
        {**GOOD, "environment": {"K": "1"}, "secret_environment": {"K": "2"}}, environ={}
    )
    assert "secret_environment" in errors


def test_rehearsed_preemption_is_local_only_and_defaults_with_spot() -> None:
    assert parse_spec({**GOOD, "spot": 0}, environ={}).preempt_interval == 60
    assert parse_spec(GOOD, environ={}).preempt_interval == 0
    errors = errors_for({**GOOD, "cloud": "aws", "preempt_interval": 5}, environ={})
    assert "local" in errors["preempt_interval"]


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from([*FIELDS, "storage"]), value=junk)
def test_any_value_gives_a_spec_or_a_named_error(field: str, value) -> None:
    """No input makes the parser raise anything but SpecError, and errors name a field."""
    try:
        parse_spec({**GOOD, field: value}, environ={}, check_paths=False)
    except SpecError as exc:
        assert exc.errors
        for e in exc.errors:
            assert e.field and e.message
            assert e.field.split(".")[0] in {*FIELDS, "inputs"} or e.field == field


@settings(max_examples=200, deadline=None)
@given(
    storage=st.dictionaries(
        st.sampled_from(
            [
                "workdir",
                "output",
                "exclude",
                "container",
                "container_opts",
                "checkpoint_interval",
                "junk",
            ]
        ),
        junk,
        max_size=4,
    )
)
def test_any_storage_gives_a_spec_or_a_named_error(storage: dict) -> None:
    try:
        parse_spec({**GOOD, "storage": storage}, environ={}, check_paths=False)
    except SpecError as exc:
        assert all(e.field.startswith("storage") for e in exc.errors)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_timeout_or_interval_that_is_not_finite_is_named(value: float) -> None:
    assert set(errors_for({**GOOD, "timeout": value}, environ={})) == {"timeout"}
    bad = errors_for({**GOOD, "storage": {"checkpoint_interval": value}}, environ={})
    assert set(bad) == {"storage.checkpoint_interval"}


@pytest.mark.parametrize("cloud", ["local", "aws", "gcp", "azure"])
def test_a_namespace_is_refused_outside_k8s(cloud: str) -> None:
    errors = errors_for({**GOOD, "cloud": cloud, "namespace": "ml"})
    assert list(errors) == ["namespace"] and "'k8s' only" in errors["namespace"]


def test_a_k8s_namespace_is_a_dns_label() -> None:
    raw = {**GOOD, "cloud": "k8s", "region": "local", "machine": "s"}
    assert parse_spec({**raw, "namespace": "ml-team"}).namespace == "ml-team"
    errors = errors_for({**raw, "namespace": "ML_team"})
    assert list(errors) == ["namespace"] and "not a namespace name" in errors["namespace"]
