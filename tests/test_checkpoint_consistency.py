"""Consistent, resumable checkpoints, end to end on the local cloud.

Real bootstrap, agent, group, rclone and bucket folder. A preemption is what the
local group itself does to a machine: signal the agent's process group and the
script's (`script.pgid`), SIGTERM first when there is notice, SIGKILL at the end.
The tests do that themselves, at chosen or seeded random moments, so they are
deterministic in what they check; every wait has a deadline, and no duration is
asserted.

Scripts are Python (`#!<this python>`) and leave their observations in the
machine's folder (the parent of the workdir, never checkpointed) for the test to
read: `restored.json` (what the boot found), `acked` (consistency points the
agent confirmed). A `release` file in the group folder lets them finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import lifecycle, sync
from pulumi_iterative.agent.runner import Agent
from pulumi_iterative.records import BootConfig, TaskDefinition
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from pulumi_iterative.storage import Rclone, Remote
from pulumi_iterative.task import TaskRef
from tests.helpers import wait_done, wait_for

PRELUDE = f"""#!{sys.executable}
import json, os, subprocess, sys, time
from pathlib import Path

WORK = Path.cwd()
MACHINE = WORK.parent
RELEASE = MACHINE.parent.parent / "release"
ENV = {{k: os.environ.get(k) for k in ("TASK_INDEX", "TASK_RESTARTS", "TASK_RESUMED")}}


def files():
    return sorted(p.relative_to(WORK).as_posix() for p in WORK.rglob("*") if p.is_file())


def note(name, obj):
    tmp = MACHINE / (name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, MACHINE / name)


def wait_release(limit=240):
    end = time.monotonic() + limit
    while not RELEASE.exists() and time.monotonic() < end:
        time.sleep(0.1)

"""

# A checkpoint of PARTS files, each tagged with the step that wrote it and sized by
# it, so a restored file is either exactly one step's version or visibly torn.
CHECKPOINT_SET = """
PARTS = 4


def body(step, i):
    return f"begin {step} {i}\\n" + f"{step} " * (300 + 41 * step) + f"\\nend {step} {i}\\n"


def restored_steps():
    out = []
    for i in range(PARTS):
        p = WORK / "ckpt" / f"part{i}.txt"
        if not p.exists():
            out.append(None)
            continue
        text = p.read_text()
        try:
            step = int(text.split()[1])
        except (IndexError, ValueError):
            step = -1
        out.append(step if text == body(step, i) else "torn")
    return out


def write_slowly(step, pause):
    (WORK / "ckpt").mkdir(exist_ok=True)
    for i in range(PARTS):
        text = body(step, i)
        with open(WORK / "ckpt" / f"part{i}.txt", "w") as fh:
            fh.write(text[: len(text) // 2])
            fh.flush()
            time.sleep(pause)
            fh.write(text[len(text) // 2 :])
        time.sleep(pause)
"""


def make_spec(workdir: Path, script: str, **kw: Any):
    storage = {"workdir": str(workdir), "output": "", **kw.pop("storage", {})}
    return parse_spec({"cloud": "local", "script": script, "storage": storage, **kw}, environ={})


# --- the group's machines, as the test sees them ----------------------------------------


def group(ref: TaskRef) -> Path:
    return Path(ref.extra["group"])


def machines(ref: TaskRef) -> list[dict[str, Any]]:
    try:
        return json.loads((group(ref) / "machines.json").read_text())
    except (FileNotFoundError, ValueError):
        return []


def until(condition: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def events(ref: TaskRef, last: int = 8) -> str:
    try:
        lines = (group(ref) / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return "(none)"
    return "\n".join(lines[-last:])


def read_note(machine: dict[str, Any], name: str) -> Any:
    try:
        return json.loads((Path(machine["dir"]) / name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def next_boot(
    ref: TaskRef, seen: set[str], note: str = "restored.json", index: int = 0
) -> dict[str, Any]:
    """The first machine of this index not seen before, once its script left `note`."""

    def found() -> dict[str, Any] | None:
        for m in machines(ref):
            if m["index"] == index and m["id"] not in seen and read_note(m, note) is not None:
                return m
        return None

    try:
        m = until(found, f"a new machine for index {index} with {note}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the group's last events:\n{events(ref)}") from None
    seen.add(m["id"])
    return m


def preempt(machine: dict[str, Any], sig: int = signal.SIGKILL) -> None:
    """What the group does to a machine it takes away: signal both process groups."""
    pgids = [machine["pid"]]
    with contextlib.suppress(FileNotFoundError, ValueError):
        pgids.append(int((Path(machine["dir"]) / "script.pgid").read_text()))
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def acked(machine: dict[str, Any]) -> list[int]:
    try:
        return [int(x) for x in (Path(machine["dir"]) / "acked").read_text().split()]
    except FileNotFoundError:
        return []


def release(ref: TaskRef) -> None:
    (group(ref) / "release").write_text("done\n")


def bucket(ref: TaskRef):
    return lifecycle.rclone_for(ref)


# --- (a) killed at random points while writing a multi-file checkpoint -----------------

SLOW_WRITER = (
    PRELUDE
    + CHECKPOINT_SET
    + """
steps = restored_steps()
note("restored.json", {"env": ENV, "steps": steps, "files": files()})
# Declare up front that this script chooses its consistency points.
subprocess.run(["pulumi-iterative", "checkpoint"], check=True, capture_output=True)
done = [s for s in steps if isinstance(s, int)]
step = max(done) if done else 0
while not RELEASE.exists() and step < 500:
    step += 1
    write_slowly(step, 0.06)
    subprocess.run(["pulumi-iterative", "checkpoint"], check=True, capture_output=True)
    with open(MACHINE / "acked", "a") as fh:
        fh.write(f"{step}\\n")
"""
)

RUNS = 20


def consistent(steps: list[Any]) -> int | None:
    """The one step a restored set holds (None: no set yet); fail on a mixed or torn set."""
    assert "torn" not in steps, f"a torn file was restored: {steps}"
    assert len(set(steps)) == 1, f"a mixed set was restored: {steps}"
    return steps[0]


def test_killed_at_random_points_never_restores_a_mixed_or_torn_set(
    iterative_home: Path, workdir: Path
) -> None:
    (workdir / "train.py").write_text("print('train')\n")
    # Background checkpoints every 0.3s would catch half-written sets all the time,
    # were they not switched off once the script asks.
    ref = lifecycle.create(
        make_spec(workdir, SLOW_WRITER, storage={"checkpoint_interval": 0.3}, timeout=900)
    )
    rng = random.Random(20261126)
    seen: set[str] = set()
    m = next_boot(ref, seen)
    assert read_note(m, "restored.json")["steps"] == [None] * 4
    previous = 0  # the step the killed machine started from
    restored_steps = []
    for run in range(RUNS):
        time.sleep(rng.uniform(0.0, 2.0))  # a random point in its write/checkpoint loop
        preempt(m)
        confirmed = acked(m)  # read after the kill: final
        last = confirmed[-1] if confirmed else previous
        m = next_boot(ref, seen)
        found = read_note(m, "restored.json")
        step = consistent(found["steps"]) or 0
        assert found["env"]["TASK_RESTARTS"] == str(run + 1)
        # The newest confirmed set, or the one whose confirmation the kill cut short.
        assert last <= step <= last + 1, (run, confirmed, step)
        assert found["files"] == (
            ["train.py"] if step == 0 else [f"ckpt/part{i}.txt" for i in range(4)] + ["train.py"]
        )
        restored_steps.append(step)
        previous = step
    assert restored_steps[-1] > 0, "no consistency point ever landed"

    release(ref)
    status = wait_done(ref, timeout=120)
    assert status.state == State.SUCCEEDED
    assert status.restarts == {0: RUNS}
    newest = sync.latest(bucket(ref), "i0")
    assert newest is not None
    final = group(ref) / "final"
    sync.restore(bucket(ref), newest, final)
    parts = [(final / "ckpt" / f"part{i}.txt").read_text() for i in range(4)]
    assert len({p.split()[1] for p in parts}) == 1
    lifecycle.delete(ref, pull_outputs=False)


# --- (b) asks for a consistency point and is killed right after -------------------------

ASK_THEN_DIE = (
    PRELUDE
    + CHECKPOINT_SET
    + """
from pulumi_iterative import checkpoint

note("restored.json", {"env": ENV, "steps": restored_steps(), "files": files()})
if ENV["TASK_RESUMED"] == "1":
    # Resumed from a consistency point: background checkpoints stay off from the start,
    # even before this boot asks for anything.
    write_slowly(3, 0.0)
    with open(WORK / "ckpt" / "part1.txt", "w") as fh:
        fh.write(body(4, 1))
    note("half", 2)
    wait_release()
    sys.exit(0)
write_slowly(1, 0.0)
gen = checkpoint()
note("acked", gen)
# Then the next set begins, slowly: only half of it will ever be written.
(WORK / "ckpt" / "part0.txt").write_text(body(2, 0))
(WORK / "ckpt" / "new.txt").write_text("after the consistency point")
with open(WORK / "ckpt" / "part1.txt", "w") as fh:
    fh.write(body(2, 1)[:100])
    fh.flush()
    note("half", 1)
    time.sleep(600)
"""
)


def test_killed_right_after_a_consistency_point_gets_exactly_that_set(
    iterative_home: Path, workdir: Path
) -> None:
    ref = lifecycle.create(make_spec(workdir, ASK_THEN_DIE, storage={"checkpoint_interval": 0.2}))
    seen: set[str] = set()
    m = next_boot(ref, seen, "half")
    gen = read_note(m, "acked")
    assert isinstance(gen, int) and gen >= 1
    # Give the agent many background intervals: none may take the half-written set.
    time.sleep(1.5)
    newest = sync.latest(bucket(ref), "i0")
    assert newest is not None and (newest.seq, newest.kind) == (gen, "explicit")
    preempt(m)

    m2 = next_boot(ref, seen)
    found = read_note(m2, "restored.json")
    assert found["env"]["TASK_RESUMED"] == "1"
    assert found["steps"] == [1, 1, 1, 1]
    assert found["files"] == [f"ckpt/part{i}.txt" for i in range(4)]

    until(lambda: read_note(m2, "half"), "the replacement to write a mixed set")
    time.sleep(1.5)
    newest = sync.latest(bucket(ref), "i0")
    assert newest is not None and (newest.seq, newest.kind) == (gen, "explicit")
    preempt(m2)
    found = read_note(next_boot(ref, seen), "restored.json")
    assert found["steps"] == [1, 1, 1, 1]
    release(ref)
    assert wait_done(ref).state == State.SUCCEEDED
    lifecycle.delete(ref, pull_outputs=False)


# --- (c) the script knows where it stands -------------------------------------------------

COUNTERS = (
    PRELUDE
    + """
from pulumi_iterative import checkpoint

note("restored.json", {"env": ENV, "files": files()})
(WORK / f"progress-{ENV['TASK_INDEX']}.txt").write_text(f"boot {ENV['TASK_RESTARTS']}\\n")
checkpoint()
note("ready", 1)
wait_release()
"""
)


def test_restart_counters_after_two_preemptions(iterative_home: Path, workdir: Path) -> None:
    ref = lifecycle.create(make_spec(workdir, COUNTERS, parallelism=2))
    seen: set[str] = set()
    other = next_boot(ref, seen, "ready", index=1)
    boots = [next_boot(ref, seen, "ready", index=0)]
    for _ in range(2):
        preempt(boots[-1])
        boots.append(next_boot(ref, seen, "ready", index=0))
    envs = [read_note(m, "restored.json")["env"] for m in boots]
    assert [(e["TASK_RESTARTS"], e["TASK_RESUMED"]) for e in envs] == [
        ("0", "0"),
        ("1", "1"),
        ("2", "1"),
    ]
    assert all(e["TASK_INDEX"] == "0" for e in envs)
    assert read_note(other, "restored.json")["env"] == {
        "TASK_INDEX": "1",
        "TASK_RESTARTS": "0",
        "TASK_RESUMED": "0",
    }
    # What the third boot restored is what the second one checkpointed.
    assert read_note(boots[2], "restored.json")["files"] == ["progress-0.txt"]

    status = wait_for(ref, lambda s: s.restarts == {0: 2} and s.counts == {"running": 2})
    assert [m.index for m in status.machines].count(0) == 3
    release(ref)
    status = wait_done(ref)
    assert status.state == State.SUCCEEDED and status.restarts == {0: 2}
    assert status.to_dict()["restarts"] == {"0": 2}
    lifecycle.delete(ref, pull_outputs=False)


# --- (d) deleted files stay deleted --------------------------------------------------------

DELETER = (
    PRELUDE
    + """
import shutil
from pulumi_iterative import checkpoint

note("restored.json", {"env": ENV, "files": files()})
if ENV["TASK_RESTARTS"] == "0":
    (WORK / "a.txt").unlink()
    shutil.rmtree(WORK / "data")
    (WORK / "results").mkdir()
    (WORK / "results" / "new.txt").write_text("made on the machine")
    (WORK / "results" / "scratch.txt").write_text("to be deleted")
    checkpoint()
    (WORK / "results" / "scratch.txt").unlink()
    checkpoint()
    note("ready", 1)
    time.sleep(600)
else:
    (WORK / "results" / "new.txt").unlink()
    wait_release()
"""
)


def test_deleted_files_stay_deleted_after_restore(
    iterative_home: Path, workdir: Path, tmp_path: Path
) -> None:
    (workdir / "a.txt").write_text("a")
    (workdir / "b.txt").write_text("b")
    (workdir / "data").mkdir()
    (workdir / "data" / "c.txt").write_text("c")
    ref = lifecycle.create(make_spec(workdir, DELETER))
    seen: set[str] = set()
    m = next_boot(ref, seen, "ready")
    assert read_note(m, "restored.json")["files"] == ["a.txt", "b.txt", "data/c.txt"]
    preempt(m)
    m = next_boot(ref, seen)
    assert read_note(m, "restored.json")["files"] == ["b.txt", "results/new.txt"]
    release(ref)
    assert wait_done(ref).state == State.SUCCEEDED
    newest = sync.latest(bucket(ref), "i0")
    assert newest is not None and sorted(newest.files) == ["b.txt"]
    # Bringing everything home gives what the task left, not the workstation's old files.
    assert lifecycle.pull(ref, tmp_path / "pulled") == 1
    assert sorted(p.name for p in (tmp_path / "pulled").rglob("*")) == ["b.txt"]
    lifecycle.delete(ref, pull_outputs=False)


# --- (e) SIGTERM before the kill: a script that never asks still gets a checkpoint -----------

NEVER_ASKS = (
    PRELUDE
    + """
note("restored.json", {"env": ENV, "files": files(),
                       "model": (WORK / "model.txt").read_text() if ENV["TASK_RESUMED"] == "1"
                       else None})
if ENV["TASK_RESUMED"] == "1":
    wait_release()
    sys.exit(0)
(WORK / "model.txt").write_text("epoch 3\\n")
note("ready", 1)
time.sleep(600)
"""
)


@pytest.mark.parametrize("notice", ["test", "group"])
def test_sigterm_before_the_kill_checkpoints_a_script_that_never_asks(
    iterative_home: Path, workdir: Path, notice: str
) -> None:
    """Background mode: no periodic checkpoint would come (interval 0); the notice must.

    `test`: this test signals the machine as the group would; `group`: the local
    cloud's own rehearsed preemption (preempt_interval/preempt_notice) does it.
    """
    rehearsal = {"preempt_interval": 4, "preempt_notice": 30} if notice == "group" else {}
    ref = lifecycle.create(
        make_spec(workdir, NEVER_ASKS, storage={"checkpoint_interval": 0}, **rehearsal)
    )
    seen: set[str] = set()
    if notice == "test":
        m = next_boot(ref, seen, "ready")
        preempt(m, signal.SIGTERM)
        until(lambda: sync.latest(bucket(ref), "i0"), "the checkpoint the notice triggers")
        preempt(m, signal.SIGKILL)
    m = next_boot(ref, seen)
    found = read_note(m, "restored.json")
    if notice == "group":  # a rehearsal may also land before the script wrote its file
        m = until(
            lambda: next(
                (
                    x
                    for x in machines(ref)
                    if (read_note(x, "restored.json") or {}).get("model") is not None
                ),
                None,
            ),
            "a boot that resumed from the preempted one",
        )
        found = read_note(m, "restored.json")
    assert found["env"]["TASK_RESUMED"] == "1"
    assert found["model"] == "epoch 3\n"
    newest = sync.latest(bucket(ref), "i0")
    assert newest is not None and newest.kind == "signal"
    release(ref)
    lifecycle.delete(ref, pull_outputs=False)


# --- (f) the notice arrives while a consistency point is uploading ---------------------------

BIG = 150 * 1024 * 1024

NOTICE_MID_ASK = (
    PRELUDE
    + CHECKPOINT_SET
    + f"""
from pulumi_iterative import checkpoint

note("restored.json", {{"env": ENV, "steps": restored_steps(), "files": files()}})
if ENV["TASK_RESUMED"] == "1":
    wait_release()
    sys.exit(0)
write_slowly(1, 0.0)
note("acked", checkpoint())
write_slowly(2, 0.0)
with open(WORK / "ckpt" / "big.bin", "wb") as fh:
    for _ in range({BIG} // (1 << 20)):
        fh.write(b"2" * (1 << 20))
note("asking", 1)
checkpoint()
note("acked", "too late")
time.sleep(600)
"""
)


def test_notice_during_a_consistency_point_restores_a_whole_set(
    iterative_home: Path, workdir: Path
) -> None:
    """SIGTERM reaches the agent, the script and the upload under way: whatever lands
    is one whole set (here the previous point, or the new one if its manifest made it)."""
    ref = lifecycle.create(make_spec(workdir, NOTICE_MID_ASK))
    seen: set[str] = set()
    m = next_boot(ref, seen, "asking")
    bodies = Path(ref.remote["root"]) / "data" / "gen" / "i0"
    until(lambda: list(bodies.rglob("big.bin*")), "the big body to be uploading", timeout=60)
    preempt(m, signal.SIGTERM)
    until(lambda: any(x["id"] != m["id"] for x in machines(ref)), "the agent to go", timeout=60)
    preempt(m, signal.SIGKILL)
    found = read_note(next_boot(ref, seen), "restored.json")
    step = consistent(found["steps"])
    assert step in (1, 2), found
    assert ("ckpt/big.bin" in found["files"]) == (step == 2)
    assert read_note(m, "acked") == 1  # the interrupted point was never confirmed
    release(ref)
    lifecycle.delete(ref, pull_outputs=False)


# --- the agent itself: an ask that lands while a background checkpoint waits --------------


class AnnouncingLock:
    """A lock that tells when someone starts waiting for it."""

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> AnnouncingLock:
        self.waiting.set()
        self.inner.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


class Hooks:
    def __init__(self, home: Path) -> None:
        self.path = home

    def index(self) -> int:
        return 0

    def instance_id(self) -> str:
        return "m-test"

    def home(self) -> Path:
        return self.path

    def preemption_notice(self) -> bool:
        return False

    def leave_group(self) -> None:
        return None


def test_background_checkpoint_waiting_on_an_ask_takes_nothing(
    tmp_path: Path, workdir: Path
) -> None:
    """The background thread passed its 'has the script asked?' check, then waited for the
    lock the script's consistency point held: once that lands, it must not checkpoint."""
    remote = Remote(str(tmp_path / "bucket"))
    rclone = Rclone(remote)
    (workdir / "model.pt").write_text("epoch 1")
    sync.upload_base(rclone, workdir, ())
    config = BootConfig("t-abcdefgh12", "local", remote.to_dict(), "0")
    agent = Agent(config, Hooks(tmp_path / "machine"))
    agent.home.mkdir()
    agent.task = TaskDefinition("t-abcdefgh12", "#!/bin/sh\n", 1, 0.0, 1e12)
    agent.restore()
    agent.lock = AnnouncingLock()  # type: ignore[assignment]
    agent.lock.inner.acquire()  # the script's consistency point is uploading
    (agent.workdir / "model.pt").write_text("epoch 2, half")  # and the script went on
    waiter = threading.Thread(target=agent.background_checkpoint, args=("auto",))
    waiter.start()
    assert agent.lock.waiting.wait(30)
    agent.explicit = True  # what the ask set before it took the lock
    agent.lock.inner.release()
    waiter.join(30)
    assert not waiter.is_alive()
    assert sync.latest(rclone, "i0") is None
