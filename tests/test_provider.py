"""TaskProvider through the real provider server (`python -m pulumi.dynamic`) over gRPC,
in the order the Pulumi engine calls it, on the local cloud."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pulumi_iterative.provider import TaskProvider
from tests.provider_server import UNKNOWN, ProviderError, ProviderServer, Secret, provider_server

TYPE = "pulumi-python:dynamic/iterative:Task"


@pytest.fixture
def server(iterative_home: Path, workdir: Path) -> Iterator[ProviderServer]:
    # One server per test: it must see this test's PULUMI_ITERATIVE_HOME, and the engine
    # starts the provider in the project folder.
    env = {"PULUMI_ITERATIVE_HOME": str(iterative_home)}
    with provider_server(
        TaskProvider(),
        env=env,
        cwd=workdir,
        resource_type=TYPE,
        parent_type="iterative:index:IterativeTask",
    ) as srv:
        srv.configure({})
        yield srv


def inputs(**kw) -> dict:
    base = {
        "cloud": "local",
        "script": "#!/bin/sh\nmkdir -p results\necho $GREETING > results/out.txt\necho logged\n",
        "environment": {"GREETING": "hello"},
        "storage": {"workdir": ".", "output": "results", "checkpoint_interval": 0.5},
    }
    base.update(kw)
    return base


def read_until_done(server: ProviderServer, id_: str, outs: dict, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _, outs = server.read(id_, "train", outs)
        if outs["status"]["state"] not in ("queued", "running"):
            return outs
        time.sleep(0.3)
    raise AssertionError(f"task not done: {outs['status']}")


def test_full_lifecycle_in_engine_order(
    server: ProviderServer, workdir: Path, iterative_home: Path
) -> None:
    (workdir / "input.txt").write_text("x")
    checked, failures = server.check("train", {}, inputs())
    assert failures == []
    assert checked["storage"]["workdir"] == "."  # relative to the project, in every checkout
    assert checked["parallelism"] == 1.0 and checked["region"] == "local"

    id_, outs = server.create("train", checked)
    assert id_ == outs["task_id"] and id_.startswith("task-")
    assert outs["ref"]["cloud"] == "local"

    outs = read_until_done(server, id_, outs)
    assert outs["status"]["state"] == "succeeded"
    assert outs["status"]["counts"] == {"succeeded": 1.0}
    assert any("logged" in log for log in outs["logs"])
    assert {e["kind"] for e in outs["events"]} >= {"launch", "start", "succeeded"}

    # No change: the diff is empty and makes no cloud call.
    again, _ = server.check("train", outs, inputs())
    assert server.diff(id_, "train", outs, again).changes is False

    # Output is updatable in place; update keeps the computed outputs.
    moved, _ = server.check(
        "train",
        outs,
        inputs(storage={"workdir": ".", "output": "results/out.txt", "checkpoint_interval": 0.5}),
    )
    diff = server.diff(id_, "train", outs, moved)
    assert diff.changes is True and diff.replaces == []
    updated = server.update(id_, "train", outs, moved)
    assert updated["task_id"] == id_ and updated["status"]["state"] == "succeeded"
    assert updated["ref"]["output"] == "results/out.txt"

    # Anything else replaces, old outputs are compared (not old inputs), delete first.
    changed, _ = server.check("train", updated, inputs(machine="l"))
    diff = server.diff(id_, "train", updated, changed)
    assert diff.replaces == ["machine"] and diff.delete_before_replace is True

    server.delete(id_, "train", updated)
    assert (workdir / "results" / "out.txt").read_text() == "hello\n"
    assert "brought 1 output file(s) home" in server.stderr_text()
    assert "[4/4] Start machine group" in server.stderr_text()  # progress reaches the engine
    gone_id, gone = server.read(id_, "train", updated)
    assert gone_id == "" and gone == {}
    server.delete(id_, "train", updated)  # a second delete is fine
    assert not any((iterative_home / "buckets").iterdir())


def test_check_names_every_bad_field_and_touches_no_cloud(
    server: ProviderServer, iterative_home: Path
) -> None:
    _, failures = server.check(
        "train",
        {},
        {
            "cloud": "local",
            "spot": -4,
            "parallelism": 0,
            "machine": "huge",
            "timeout": "soon",
            "storage": {"workdir": "missing"},
        },
    )
    fields = {f for f, _ in failures}
    assert fields == {"spot", "parallelism", "machine", "timeout", "script", "storage.workdir"}
    assert all(reason for _, reason in failures)
    assert not (iterative_home / "buckets").exists()  # preview made nothing


def test_preview_with_unknown_values_does_not_fail(server: ProviderServer) -> None:
    checked, failures = server.check(
        "train", {}, {"cloud": "local", "script": UNKNOWN, "parallelism": 2}
    )
    assert failures == []
    assert checked["script"] == UNKNOWN
    # Still-wrong known values are reported even when others are unknown.
    _, failures = server.check(
        "train", {}, {"cloud": "local", "script": UNKNOWN, "parallelism": -1}
    )
    assert [f for f, _ in failures] == ["parallelism"]


def test_secret_environment_stays_secret_and_off_the_machine_script(
    server: ProviderServer, iterative_home: Path
) -> None:
    news = inputs(secret_environment=Secret({"HF_TOKEN": "hunter2"}))
    checked, failures = server.check("train", {}, news)
    assert failures == [] and isinstance(checked["secret_environment"], Secret)
    id_, outs = server.create(
        "train", {**checked, "secret_environment": Secret({"HF_TOKEN": "hunter2"})}
    )
    assert isinstance(outs["secret_environment"], Secret)  # the engine re-marks it
    bucket = iterative_home / "buckets" / id_
    assert "hunter2" not in (bucket / "bootstrap.sh").read_text()
    assert "hunter2" in (bucket / "task.json").read_text()  # read by the machine, privately
    outs = read_until_done(server, id_, outs)
    server.delete(id_, "train", outs)


def test_a_failed_create_names_the_step_and_leaves_nothing(
    server: ProviderServer, workdir: Path, iterative_home: Path
) -> None:
    gone = workdir / "data"
    gone.mkdir()
    checked, failures = server.check("train", {}, inputs(storage={"workdir": "data"}))
    assert failures == []
    os.rmdir(gone)  # the workdir vanishes between preview and up
    with pytest.raises(ProviderError) as info:
        server.create("train", checked)
    assert "[2/4] Upload workdir failed" in info.value.message
    assert "everything created before it was removed" in info.value.message
    assert not any((iterative_home / "buckets").iterdir())


def test_four_tasks_at_once_each_progress_line_reaches_the_engine_once(
    server: ProviderServer, workdir: Path, iterative_home: Path
) -> None:
    """The server runs 4 operations at once on one provider object: create, refresh and
    destroy of 4 tasks in parallel, and every task's lines are forwarded exactly once."""
    names = [f"train{i}" for i in range(4)]
    checked = {}
    for i, name in enumerate(names):
        script = f"#!/bin/sh\nmkdir -p results\necho {i} > results/out-{i}.txt\n"
        checked[name], failures = server.check(name, {}, inputs(script=script))
        assert failures == []
    with ThreadPoolExecutor(4) as pool:
        made = pool.map(lambda n: server.create(n, checked[n]), names)
        created = dict(zip(names, made, strict=True))
        done = list(pool.map(lambda n: read_until_done(server, *created[n], timeout=120), names))
        assert [o["status"]["state"] for o in done] == ["succeeded"] * 4
        list(pool.map(lambda n: server.delete(created[n][0], n, created[n][1]), names))
    assert sorted(p.name for p in (workdir / "results").iterdir()) == [
        f"out-{i}.txt" for i in range(4)
    ]
    lines = server.stderr_text().splitlines()
    steps = ("Create bucket folder", "Upload workdir", "Store task definition")
    for id_, _ in created.values():
        for k, step in enumerate(steps, start=1):
            mine = [line for line in lines if line.endswith(f"{id_}: [{k}/4] {step}")]
            assert len(mine) == 1, (id_, step, lines)
        assert sum(f"{id_}: brought 1 output file(s) home" in line for line in lines) == 1
    # and nothing twice: as many step lines in all as tasks times steps
    assert sum("[1/4] Create bucket folder" in line for line in lines) == 4
