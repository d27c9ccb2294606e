"""Ctrl-C during create leaves nothing behind; delete never drops outputs that did not
come home (issue 9, points 5 and 6). The local cloud: real folders and processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pulumi_iterative import cli, lifecycle, registry
from pulumi_iterative.clouds.base import Made
from pulumi_iterative.clouds.local import backend as local_backend
from pulumi_iterative.errors import IterativeError, NotFound
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.steps import Step, run_steps


def _spec(workdir: Path):  # type: ignore[no-untyped-def]
    return parse_spec(
        {
            "cloud": "local",
            "script": "#!/bin/sh\nmkdir -p out\necho 1 > out/x\n",
            "storage": {"workdir": str(workdir), "output": "out"},
        }
    )


def test_an_interruption_undoes_what_was_made_and_goes_on() -> None:
    removed: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    steps = [Step("one", lambda: None, Made.of("a")), Step("two", interrupt, Made.of("b"))]
    with pytest.raises(KeyboardInterrupt):
        run_steps(steps, lambda m: removed.append(m.kind))
    assert removed == ["b", "a"]


def test_ctrl_c_during_create_leaves_nothing_and_the_task_was_findable(
    iterative_home: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_during_create: list[list[str]] = []
    machine_steps = local_backend.Backend.machine_steps

    def interrupted(self, ref, spec, bootstrap):  # type: ignore[no-untyped-def]
        def ctrl_c() -> None:
            seen_during_create.append([r.task_id for r in registry.all_refs()])
            raise KeyboardInterrupt

        return [*machine_steps(self, ref, spec, bootstrap), Step("Ctrl-C", ctrl_c)]

    monkeypatch.setattr(local_backend.Backend, "machine_steps", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli._create(_spec(workdir))
    (ids,) = seen_during_create
    assert len(ids) == 1, "registered before the first cloud call"
    assert registry.all_refs() == []  # undone, so forgotten
    assert list((iterative_home / "buckets").iterdir()) == []
    assert list((iterative_home / "groups").iterdir()) == []


def test_delete_keeps_everything_when_outputs_cannot_come_home(
    iterative_home: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = lifecycle.create(_spec(workdir))
    end = time.monotonic() + 60
    status = lifecycle.read(ref, with_logs=False)
    while not status.done and time.monotonic() < end:
        time.sleep(0.2)
        status = lifecycle.read(ref, with_logs=False)
    assert status.state == State.SUCCEEDED

    def cannot_write(*args: object, **kwargs: object) -> int:
        raise NotFound("rclone copy: out/x: cannot open for writing: directory not found")

    monkeypatch.setattr(lifecycle, "pull", cannot_write)
    with pytest.raises(IterativeError, match=r"cannot open for writing.*nothing was removed"):
        lifecycle.delete(ref)
    assert lifecycle.exists(ref)  # the bucket and its outputs are all still there
    monkeypatch.undo()
    assert lifecycle.delete(ref) == 1
    assert (workdir / "out" / "x").read_text() == "1\n"
    # Once the bucket is really gone, a NotFound from the pull is "done".
    monkeypatch.setattr(lifecycle, "pull", cannot_write)
    assert lifecycle.delete(ref) == 0
