"""Records that cross a process boundary: one writer, one reader, old and new together."""

from __future__ import annotations

import json

import pytest

from pulumi_iterative.records import BootConfig, BootReport, StopMarker, TaskDefinition

EXAMPLES = [
    BootConfig("train-abcdefgh12", "aws", {"root": "b/p", "env": {"X": "1"}}, "0.2.0"),
    TaskDefinition(
        "train-abcdefgh12",
        "#!/bin/sh\ntrue\n",
        3,
        1.5,
        99.0,
        {"A": "1"},
        {"TOKEN": "x"},
        ("*.tmp",),
        2.0,
    ),
    BootReport("0-abcd", 0, "abcd", "i-1", "failed", 1.0, 2.0, 3, "the script exited", 1, 4, 2.5),
    StopMarker(12.0),
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip_through_json(record: object) -> None:
    data = json.loads(json.dumps(record.to_dict()))  # type: ignore[attr-defined]
    assert type(record).from_dict(data) == record  # type: ignore[attr-defined]
    assert data["schema"] == 1


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_a_newer_writers_extra_keys_are_ignored(record: object) -> None:
    data = {**record.to_dict(), "added_in_a_later_version": {"x": 1}}  # type: ignore[attr-defined]
    assert type(record).from_dict(data) == record  # type: ignore[attr-defined]


def test_an_older_agents_report_still_reads() -> None:
    """What the agent wrote before records had a schema: plain keys, some absent."""
    old = {"machine": "1-ff", "index": 1, "boot": "ff", "instance": "i-9", "state": "running",
           "started": 10, "restarts": 2}  # fmt: skip
    report = BootReport.from_dict(old)
    assert (report.index, report.state, report.started, report.restarts) == (1, "running", 10.0, 2)
    assert report.finished is None and report.exit_code is None and report.schema == 1


def test_pulumi_floats_become_integers() -> None:
    """Values that went through Pulumi state come back as floats."""
    data = {**EXAMPLES[1].to_dict(), "parallelism": 3.0}  # type: ignore[attr-defined]
    assert TaskDefinition.from_dict(data).parallelism == 3
    assert isinstance(TaskDefinition.from_dict(data).parallelism, int)
