"""The one declaration of the arguments (arguments.py) and everything derived from it."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pulumi_iterative import arguments
from pulumi_iterative.arguments import ARGUMENTS, BY_NAME, FIELDS, UPDATABLE
from pulumi_iterative.errors import SpecError
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.spec import parse_spec

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<meaning>.*) \| (?P<default>.*) \|$")


def readme_rows() -> dict[str, tuple[str, str]]:
    text = README.read_text()
    table = text[text.index("| argument | meaning | default |") :].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        m = ROW.match(line)
        assert m, f"README argument row not in the table's shape: {line!r}"
        rows[m["name"]] = (m["meaning"], m["default"])
    return rows


def test_readme_table_matches_the_declaration() -> None:
    rows = readme_rows()
    expected = {a.name: (a.help, a.doc_default) for a in ARGUMENTS}
    fix = "regenerate it with `python -m pulumi_iterative.arguments`"
    assert sorted(rows.keys() - expected.keys()) == [], f"stale rows in README; {fix}"
    assert sorted(expected.keys() - rows.keys()) == [], f"undocumented arguments; {fix}"
    for name, (meaning, default) in expected.items():
        assert rows[name][1] == default, f"README default of {name}; {fix}"
        assert rows[name][0] == meaning, f"README meaning of {name}; {fix}"
    assert list(rows) == [a.name for a in ARGUMENTS], f"README order; {fix}"


def test_readme_names_what_updates_in_place() -> None:
    text = README.read_text()
    sentence = re.search(r"Changing (.*?) updates the task in place", text)
    assert sentence, "README says which changes update the task in place"
    assert set(re.findall(r"`([^`]+)`", sentence.group(1))) == set(UPDATABLE)


def test_declared_defaults_are_what_the_parser_gives(tmp_path: Path) -> None:
    spec = parse_spec({"cloud": "aws", "script": "x"}, environ={}, base_dir=tmp_path)
    data = spec.to_dict()
    for arg in ARGUMENTS:
        if arg.default is arguments.REQUIRED or arg.name == "region":
            continue  # region: the cloud's own default
        got = data["storage"][arg.field] if arg.group == "storage" else data[arg.name]
        assert got == arg.default, arg.name


def test_unknown_field_message_lists_the_declaration() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"cloud": "local", "script": "x", "machne": "m"}, environ={})
    (error,) = info.value.errors
    assert error.field == "machne" and ", ".join(FIELDS) in error.message


def test_component_args_are_the_declaration() -> None:
    from pulumi_iterative import IterativeTaskArgs, Storage

    assert [f.name for f in fields(IterativeTaskArgs)] == list(FIELDS)
    assert [f.name for f in fields(Storage)] == list(arguments.STORAGE_FIELDS)
    assert "HF" not in (IterativeTaskArgs.__doc__ or "") and "secret_environment:" in (
        IterativeTaskArgs.__doc__ or ""
    )


# One valid change per argument, from BASE (on the local cloud).
BASE = {"cloud": "local", "script": "#!/bin/sh\ntrue\n", "storage": {"workdir": "."}}
CHANGES = {
    "cloud": "aws",
    "region": "us-west",
    "machine": "l",
    "disk_size": 50,
    "spot": 0.5,
    "image": "nvidia",
    "parallelism": 3,
    "timeout": "2h",
    "environment": {"A": "1"},
    "secret_environment": {"B": "2"},
    "script": "#!/bin/sh\nfalse\n",
    "storage.workdir": "data",
    "storage.output": "results",
    "storage.exclude": ["*.tmp"],
    "storage.container": "bucket/prefix",
    "storage.container_opts": {"k": "v"},
    "storage.checkpoint_interval": 3,
    "permission_set": "arn:aws:iam::123456789012:instance-profile/x",
    "resource_group": "ml-team",
    "tags": {"team": "ml"},
    "name": "train",
    "preempt_interval": 30,
    "preempt_notice": 1,
    "budget": 5,
    "notional_price": 0.5,
    "namespace": "ml",  # on k8s (K8S_ONLY)
}
K8S_ONLY = {"namespace"}  # refused on the other clouds: the change case runs on k8s


def test_every_argument_has_a_change_case() -> None:
    assert set(CHANGES) == set(BY_NAME)


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_replaces_or_updates_as_declared(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    provider = TaskProvider()
    base = {**BASE, "cloud": "k8s", "region": "local"} if name in K8S_ONLY else BASE
    old, _ = provider.check({}, base), None
    new_raw = {**base, "storage": dict(base["storage"])}
    arg = BY_NAME[name]
    (new_raw["storage"] if arg.group == "storage" else new_raw)[arg.field] = CHANGES[name]
    if name == "cloud":
        new_raw["region"] = "us-east"
    if name == "resource_group":
        new_raw["cloud"] = "azure"  # the one cloud that takes it (the others refuse it)
    if name == "budget":
        new_raw["notional_price"] = 0.5  # a budget needs a price; local is free without one
    checked = provider.check({}, new_raw)
    assert checked.failures == [], checked.failures
    olds = {**old.inputs, "inherited": {"environment": {}, "secret_environment": {}}}
    diff = provider.diff("id", olds, checked.inputs)
    assert diff.changes is True
    top = arg.group
    assert (top in diff.replaces) is arg.replaces, diff.replaces


def test_cli_flags_are_the_declaration(tmp_path: Path) -> None:
    from pulumi_iterative import cli

    args = cli._parser().parse_args(
        [
            "create",
            "--cloud",
            "local",
            "--script",
            "x",
            "--disk-size",
            "30",
            "--spot",
            "0",
            "--timeout",
            "1h",
            "--env",
            "A=1",
            "--env",
            "B",
            "--tag",
            "t=1",
            "--exclude",
            "*.tmp",
            "--exclude",
            "*.log",
            "--container-opt",
            "k=v",
            "--checkpoint-interval",
            "2",
            "--workdir",
            str(tmp_path),
            "--output",
            "out",
            "--preempt-notice",
            "1",
        ]
    )
    spec = cli._spec_from_args(args)
    assert (spec.disk_size, spec.spot, spec.timeout, spec.preempt_notice) == (30, 0, 3600, 1)
    assert dict(spec.tags) == {"t": "1"} and dict(spec.environment)["A"] == "1"
    assert spec.storage.exclude == ("*.tmp", "*.log")
    assert dict(spec.storage.container_opts) == {"k": "v"}
    assert spec.storage.checkpoint_interval == 2 and spec.storage.output == "out"
    assert spec.storage.workdir == str(tmp_path.resolve())
    flags = {
        a.option_strings[0]
        for a in cli._parser()._subparsers._group_actions[0].choices["create"]._actions
        if a.option_strings
    }
    assert {a.cli_flag for a in ARGUMENTS if a.flag != "-"} <= flags


def test_readme_names_the_stack_config_keys() -> None:
    text = README.read_text()
    sentence = re.search(r"Stack config can set (.*?);\n(.*?) from stack config", text, re.S)
    assert sentence, "README says which arguments stack config can set"
    values = set(re.findall(r"`([^`]+)`", sentence.group(1)))
    merged = set(re.findall(r"`([^`]+)`", sentence.group(2)))
    assert values == {a.name for a in ARGUMENTS if a.stack_config == "value"}
    assert merged == {a.name for a in ARGUMENTS if a.stack_config == "merge"}
