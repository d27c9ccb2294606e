"""Ctrl-C during create leaves nothing behind; delete never drops outputs that did not
come home (issue 9, points 5 and 6). The local cloud: real folders and processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from pulumi_iterative import cli, lifecycle, registry
from pulumi_iterative.clouds.base import Made
from pulumi_iterative.clouds.local import backend as local_backend
from pulumi_iterative.errors import CreateCancelled, IterativeError, NotFound
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.steps import Step, run_steps
from tests.pausing_provider import PausingProvider
from tests.provider_server import ProviderServer, provider_server


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


def test_a_cancel_between_steps_runs_no_more_and_undoes_what_was_made() -> None:
    removed: list[str] = []
    ran: list[str] = []
    asked = iter([False, True])
    steps = [
        Step("one", lambda: ran.append("one"), Made.of("a")),
        Step("two", lambda: ran.append("two"), Made.of("b")),
    ]
    with pytest.raises(CreateCancelled, match=r"cancelled before step \[2/2\] two"):
        run_steps(steps, lambda m: removed.append(m.kind), lambda: next(asked))
    assert ran == ["one"] and removed == ["a"]


@pytest.fixture
def paused_server(
    iterative_home: Path, workdir: Path, tmp_path: Path
) -> Iterator[tuple[ProviderServer, Path]]:
    reached = tmp_path / "reached"
    with provider_server(
        PausingProvider(str(reached)),
        env={"PULUMI_ITERATIVE_HOME": str(iterative_home)},
        cwd=workdir,
    ) as srv:
        srv.configure({})
        yield srv, reached


def _create_until_paused(server: ProviderServer, reached: Path) -> Future[object]:
    checked, failures = server.check("train", {}, {"cloud": "local", "script": "echo hi"})
    assert failures == []
    pending = ThreadPoolExecutor(1).submit(server.create, "train", checked)
    end = time.monotonic() + 60
    while not reached.exists() and not pending.done():  # polls the server's progress
        assert time.monotonic() < end, "the create never reached its pause"
        time.sleep(0.05)
    return pending


def _server_process(server: ProviderServer) -> subprocess.Popen[bytes]:
    proc = server._proc  # the real `python -m pulumi.dynamic` process
    assert proc is not None
    return proc


def test_an_interrupted_provider_server_starts_no_machine_and_leaves_nothing(
    paused_server: tuple[ProviderServer, Path], iterative_home: Path
) -> None:
    """A cancelled `pulumi up` sends the provider SIGINT: the step under way ends, no
    machine starts, the bucket made so far is removed, and the workstation forgets it."""
    server, reached = paused_server
    pending = _create_until_paused(server, reached)
    assert [r.task_id for r in registry.all_refs()] == [reached.read_text()]
    proc = _server_process(server)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) is not None
    with pytest.raises(Exception):  # noqa: B017 - the RPC ends either way; its state is below
        pending.result(timeout=60)
    assert "Start machine group not started: create was cancelled" in server.stderr_text()
    assert registry.all_refs() == []
    assert list((iterative_home / "buckets").iterdir()) == []
    assert not (iterative_home / "groups").exists(), "no machine group was started"


def test_a_killed_provider_leaves_a_task_the_cli_finds_and_deletes(
    paused_server: tuple[ProviderServer, Path], iterative_home: Path
) -> None:
    """A second Ctrl-C kills the provider outright: nothing can be undone then, so the
    task was registered first and `pulumi-iterative delete <id>` removes what it made."""
    server, reached = paused_server
    pending = _create_until_paused(server, reached)
    proc = _server_process(server)
    proc.kill()
    proc.wait(timeout=60)
    with pytest.raises(Exception):  # noqa: B017
        pending.result(timeout=60)
    (ref,) = registry.all_refs()
    assert ref.task_id == reached.read_text() and ref.made is None
    assert list((iterative_home / "buckets").iterdir()) != [], "the bucket was made"
    assert cli.main(["delete", ref.task_id, "--no-pull"]) == 0
    assert registry.all_refs() == []
    assert list((iterative_home / "buckets").iterdir()) == []
