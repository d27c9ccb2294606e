"""The behaviour every cloud must have, written once (see harness.py for how a cloud
plugs in). Each scenario drives the real lifecycle against the cloud's emulator, with
machines simulated from the bootstrap the backend stored."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.base import Made
from pulumi_iterative.errors import IterativeError, NotFound, StepFailed
from pulumi_iterative.status import State, TaskStatus
from pulumi_iterative.steps import Remove, Step
from pulumi_iterative.task import TaskRef, new_task_id
from tests.conformance.harness import Harness
from tests.scan import leaked

DONE_WITHIN = 150.0  # seconds: generous, the machine is 2 shared cores


def wait_status(
    harness: Harness, ref: TaskRef, condition: Callable[[TaskStatus], bool], what: str
) -> TaskStatus:
    end = time.monotonic() + DONE_WITHIN
    while True:
        status = lifecycle.read(ref)
        if condition(status):
            return status
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out waiting for {what}; last status {status.to_dict()}\n{harness.report()}"
            )
        time.sleep(0.3)


def done(harness: Harness, ref: TaskRef) -> TaskStatus:
    return wait_status(harness, ref, lambda s: s.done, "the task to finish")


def test_success_outputs_home_and_delete_twice(harness: Harness, workdir: Path) -> None:
    (workdir / "data.csv").write_text("1,2,3\n")
    script = (
        "#!/bin/sh\nset -e\nmkdir -p results\nwc -c < data.csv > results/size.txt\n"
        'echo "trained with EPOCHS=$EPOCHS on $(cat data.csv)"\n'
    )
    ref = lifecycle.create(
        harness.spec(workdir, script, environment={"EPOCHS": "3"}, storage={"output": "results"})
    )
    harness.start()
    status = done(harness, ref)
    assert status.state == State.SUCCEEDED, harness.report()
    assert status.exit_code == 0
    assert "trained with EPOCHS=3 on 1,2,3" in "".join(status.logs.values())
    assert not (workdir / "results").exists()  # nothing comes home before delete
    assert lifecycle.delete(ref) == 1
    assert (workdir / "results" / "size.txt").read_text().strip() == "6"
    assert harness.leftovers(ref.task_id) == []
    lifecycle.delete(ref)  # a second delete finds everything gone and is fine
    assert harness.leftovers(ref.task_id) == []


def test_delete_removes_nothing_when_outputs_cannot_come_home(
    harness: Harness, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pull fails with NotFound for a reason of the workstation's (a file that cannot
    be written here): the task's storage is not gone, so delete keeps everything."""
    script = "#!/bin/sh\nmkdir -p results\necho 1 > results/x\n"
    ref = lifecycle.create(harness.spec(workdir, script, storage={"output": "results"}))
    harness.start()
    assert done(harness, ref).state == State.SUCCEEDED, harness.report()

    def cannot_write(*args: object, **kwargs: object) -> int:
        raise NotFound("rclone copy: results/x: cannot open for writing: directory not found")

    with monkeypatch.context() as patched:
        patched.setattr(lifecycle, "pull", cannot_write)
        with pytest.raises(IterativeError, match=r"cannot open for writing.*nothing was removed"):
            lifecycle.delete(ref)
    assert harness.leftovers(ref.task_id) != [], "everything is still there"
    assert lifecycle.delete(ref) == 1
    assert (workdir / "results" / "x").read_text() == "1\n"
    assert harness.leftovers(ref.task_id) == []


def test_failing_script_is_failed_with_its_code(harness: Harness, workdir: Path) -> None:
    """A failed script ends as failed, every boot of it reported: one boot where the
    machine leaves its group, `harness.script_tries` where the cloud retries a failed
    boot (k8s); while a retry is due the task is not failed yet."""
    ref = lifecycle.create(harness.spec(workdir, "#!/bin/sh\necho broken >&2\nexit 3\n"))
    harness.start()
    seen: list[TaskStatus] = []

    def record(status: TaskStatus) -> bool:
        seen.append(status)
        return status.done

    status = wait_status(harness, ref, record, "the task to finish")
    assert status.state == State.FAILED and status.exit_code == 3, harness.report()
    boots = [m for m in status.machines if m.index == 0]
    assert len(boots) == harness.script_tries, harness.report()
    for machine in boots:
        assert machine.state == State.FAILED and machine.exit_code == 3, machine
        assert "code 3" in machine.reason and "broken" in status.logs[machine.machine]
    early = [s.to_dict() for s in seen if s.done and len(s.machines) < harness.script_tries]
    assert early == [], "the task ended while a retry was due"
    lifecycle.delete(ref)
    assert harness.leftovers(ref.task_id) == []


def test_timeout_stops_the_script_and_the_backstop_is_set(harness: Harness, workdir: Path) -> None:
    # The budget counts from create, so boot time is part of it: 20 s is enough to boot
    # on a loaded machine, and short enough to wait for.
    ref = lifecycle.create(harness.spec(workdir, "#!/bin/sh\necho start\nsleep 600\n", timeout=20))
    backstop = harness.backstop(ref)
    assert backstop is not None and ref.deadline <= backstop <= ref.deadline + 120
    harness.start()
    status = done(harness, ref)
    assert status.state == State.TIMEOUT, harness.report()
    lifecycle.delete(ref)
    assert harness.leftovers(ref.task_id) == []


RESUMABLE = """#!/bin/sh
set -e
mkdir -p results
echo "index=$TASK_INDEX resumed=$TASK_RESUMED" >> results/history.txt
if [ "$TASK_RESUMED" = 0 ]; then
  echo "epoch 1" > results/progress.txt
  pulumi-iterative checkpoint >/dev/null
  echo "durable epoch 1"
  while true; do sleep 0.2; done
fi
grep -q "epoch 1" results/progress.txt
echo "epoch 2" >> results/progress.txt
"""


def test_preemption_resumes_from_the_checkpoint(harness: Harness, workdir: Path) -> None:
    spec = harness.spec(
        workdir,
        RESUMABLE,
        spot=0,
        storage={"output": "results", "checkpoint_interval": 0},
    )
    ref = lifecycle.create(spec)
    harness.start()
    wait_status(
        harness,
        ref,
        lambda s: "durable epoch 1" in "".join(s.logs.values()),
        "the consistency point",
    )
    first = harness.preempt(ref, 0)
    status = done(harness, ref)
    assert status.state == State.SUCCEEDED, harness.report()
    assert status.restarts == {0: 1}
    boots = [m for m in status.machines if m.index == 0]
    assert [m.state for m in boots] == [State.INTERRUPTED, State.SUCCEEDED]
    assert boots[1].instance != first
    lifecycle.delete(ref)
    history = (workdir / "results" / "history.txt").read_text().splitlines()
    assert history == ["index=0 resumed=0", "index=0 resumed=1"]
    assert (workdir / "results" / "progress.txt").read_text() == "epoch 1\nepoch 2\n"
    assert harness.leftovers(ref.task_id) == []


ENDS_ON_NOTICE = """#!/bin/sh
mkdir -p results
echo "boot $TASK_RESTARTS resumed $TASK_RESUMED" >> results/boots.txt
if [ "$TASK_RESTARTS" = 0 ]; then
  trap 'echo "notice: exiting {code}"; exit {code}' TERM
  pulumi-iterative checkpoint >/dev/null
  echo "durable boot 0"
  while true; do sleep 0.2; done
fi
echo finished > results/done.txt
"""


@pytest.mark.parametrize("code", [0, 143])
def test_a_script_ending_on_the_notice_is_interrupted_whatever_its_code(
    harness: Harness, workdir: Path, code: int
) -> None:
    """Most scripts exit 143 on SIGTERM, some trap it and exit 0: either way the boot was
    taken away, so it is `interrupted`, the replacement runs, and until it has finished
    the task is never failed or succeeded."""
    script = ENDS_ON_NOTICE.replace("{code}", str(code))
    spec = harness.spec(
        workdir, script, spot=0, storage={"output": "results", "checkpoint_interval": 0}
    )
    ref = lifecycle.create(spec)
    harness.start()
    wait_status(
        harness,
        ref,
        lambda s: "durable boot 0" in "".join(s.logs.values()),
        "the first boot's consistency point",
    )
    harness.take_away(ref, 0)
    seen: list[TaskStatus] = []

    def record(status: TaskStatus) -> bool:
        seen.append(status)
        return status.done

    status = wait_status(harness, ref, record, "the replacement to finish")
    early = [
        s.to_dict()
        for s in seen
        if s.state in (State.FAILED, State.SUCCEEDED)
        and len([m for m in s.machines if m.index == 0]) < 2
    ]
    assert early == [], "the task ended while its replacement was due"
    assert status.state == State.SUCCEEDED and status.exit_code == 0, harness.report()
    boots = [m for m in status.machines if m.index == 0]
    assert [m.state for m in boots] == [State.INTERRUPTED, State.SUCCEEDED], harness.report()
    lifecycle.delete(ref)
    assert (workdir / "results" / "boots.txt").read_text().splitlines() == [
        "boot 0 resumed 0",
        "boot 1 resumed 1",
    ]
    assert (workdir / "results" / "done.txt").exists()
    assert harness.leftovers(ref.task_id) == []


def test_parallel_machines_know_their_index(harness: Harness, workdir: Path) -> None:
    script = (
        "#!/bin/sh\nmkdir -p results\n"
        "echo $TASK_INDEX of $TASK_COUNT > results/part-$TASK_INDEX.txt\n"
    )
    ref = lifecycle.create(
        harness.spec(workdir, script, parallelism=3, storage={"output": "results"})
    )
    harness.start()
    status = done(harness, ref)
    assert status.state == State.SUCCEEDED, harness.report()
    assert sorted(m.index for m in status.latest) == [0, 1, 2]
    lifecycle.delete(ref)
    parts = sorted(p.read_text().strip() for p in (workdir / "results").glob("part-*.txt"))
    assert parts == ["0 of 3", "1 of 3", "2 of 3"]
    assert harness.leftovers(ref.task_id) == []


def test_failure_at_every_create_step_leaves_nothing(
    harness: Harness, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step does its work and then fails: what it and the steps before made goes."""
    (workdir / "a.txt").write_text("a")
    real = lifecycle.run_steps
    seen: list[tuple[str, ...]] = []

    for k, failing in enumerate(harness.steps, start=1):

        def sabotaged(
            steps: list[Step],
            remove: Remove,
            cancelled: Callable[[], bool] | None = None,
            *,
            failing: str = failing,
        ) -> tuple[Made, ...]:
            seen.append(tuple(s.name for s in steps))

            def broken(step: Step) -> Step:
                def do() -> None:
                    step.do()
                    raise RuntimeError(f"injected failure after {step.name}")

                return Step(step.name, do, step.made)

            return real([broken(s) if s.name == failing else s for s in steps], remove, cancelled)

        monkeypatch.setattr(lifecycle, "run_steps", sabotaged)
        task_id = new_task_id("rollback")
        with pytest.raises(StepFailed) as info:
            lifecycle.create(harness.spec(workdir, "#!/bin/sh\ntrue\n"), task_id=task_id)
        assert seen[-1] == harness.steps
        assert info.value.step == failing and (info.value.index, info.value.total) == (
            k,
            len(harness.steps),
        )
        assert info.value.undo_errors == []
        assert harness.leftovers(task_id) == [], f"after a failure at {failing!r}"


def test_no_secret_in_anything_the_cloud_stores(harness: Harness, workdir: Path) -> None:
    secret = "s3cr3t-" + new_task_id("v")
    ref = lifecycle.create(
        harness.spec(
            workdir,
            '#!/bin/sh\necho "token length ${#API_TOKEN}"\n',
            secret_environment={"API_TOKEN": secret},
        )
    )
    harness.start()
    status = done(harness, ref)
    assert status.state == State.SUCCEEDED, harness.report()
    assert f"token length {len(secret)}" in "".join(status.logs.values())  # it got there
    assert leaked(harness.stored(ref), [secret, *harness.caller_secrets]) == []
    lifecycle.delete(ref)


def test_broken_install_ends_the_machine_and_says_why(
    harness: Harness, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.break_install(monkeypatch)
    ref = lifecycle.create(harness.spec(workdir, "#!/bin/sh\ntrue\n"))
    harness.start()
    status = wait_status(
        harness,
        ref,
        lambda s: s.state == State.FAILED and not harness.running_machines(ref),
        "the machine to end with a failed status",
    )
    assert any("install" in m.reason or "bootstrap" in m.reason for m in status.machines)
    lifecycle.delete(ref)


def test_delete_removes_what_create_recorded(
    harness: Harness, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delete undoes the task's own records: it never rebuilds today's create steps (a
    newer version may make other objects, or name them differently)."""
    ref = lifecycle.create(harness.spec(workdir, "#!/bin/sh\ntrue\n"))
    assert ref.made is not None and len(ref.made) >= 2
    backend = type(lifecycle.get_backend(ref.cloud))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("delete must not rebuild the create steps")

    for method in ("storage_steps", "machine_steps", "install"):
        monkeypatch.setattr(backend, method, refuse)
    lifecycle.delete(lifecycle_ref_roundtrip(ref))
    assert harness.leftovers(ref.task_id) == []


def test_a_state_from_before_records_still_deletes(harness: Harness, workdir: Path) -> None:
    """Version 1 of the state had no `made`: the backend derives what that version made."""
    ref = lifecycle.create(harness.spec(workdir, "#!/bin/sh\ntrue\n"))
    old = lifecycle_ref_roundtrip(ref).to_dict()
    del old["made"], old["version"]
    lifecycle.delete(TaskRef.from_dict(old))
    assert harness.leftovers(ref.task_id) == []


def lifecycle_ref_roundtrip(ref: TaskRef) -> TaskRef:
    """The ref as Pulumi state gives it back: JSON numbers, integers as floats."""
    data = json.loads(json.dumps(ref.to_dict()))
    data["parallelism"] = float(data["parallelism"])
    return TaskRef.from_dict(data)
