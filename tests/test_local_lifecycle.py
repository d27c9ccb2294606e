"""End-to-end tasks on the local cloud: the real bootstrap, agent, group and rclone."""

from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path

import pytest

from pulumi_iterative import lifecycle, registry
from pulumi_iterative.clouds.local.backend import _alive
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.helpers import stored_bodies, wait_done, wait_for


def spec(workdir: Path, script: str, **kw):
    storage = {
        "workdir": str(workdir),
        "output": "results",
        "checkpoint_interval": 0.5,
        **kw.pop("storage", {}),
    }
    return parse_spec({"cloud": "local", "script": script, "storage": storage, **kw}, environ={})


def nothing_left(home: Path) -> None:
    """No bucket, no group folder, no registry entry, no live process of any task."""
    assert not any((home / "buckets").glob("*")), list((home / "buckets").glob("*"))
    assert not any((home / "groups").glob("*"))
    assert registry.all_refs() == []


COUNTER = r"""#!/bin/sh
n=$(cat count.txt 2>/dev/null || echo 0)
echo "boot $TASK_RESTARTS resumed $TASK_RESUMED starts at $n"
while [ "$n" -lt {target} ]; do
  n=$((n + 1)); echo "$n" > count.txt
  if [ $((n % 3)) -eq 0 ] && {explicit}; then
    pulumi-iterative checkpoint >/dev/null && echo "durable $n"
  fi
  sleep 0.2
done
mkdir -p results; echo "$n" > results/final.txt
"""


def boots(logs: dict[str, str]) -> list[tuple[int, int, list[int]]]:
    """(restarts, start count, durable counts) per boot, in boot order."""
    out = []
    for text in logs.values():
        m = re.search(r"boot (\d+) resumed \d starts at (\d+)", text)
        if m:
            durable = [int(d) for d in re.findall(r"durable (\d+)", text)]
            out.append((int(m.group(1)), int(m.group(2)), durable))
    return sorted(out)


def test_preemption_resumes_from_the_last_checkpoint(iterative_home: Path, workdir: Path) -> None:
    """Killed without notice, a replacement restores the newest generation: nothing that
    was durable is lost."""
    script = COUNTER.replace("{target}", "40").replace("{explicit}", "true")
    ref = lifecycle.create(
        spec(workdir, script, spot=0, preempt_interval=4, preempt_notice=0, timeout=120)
    )
    status = wait_done(ref, timeout=100)
    assert status.state == State.SUCCEEDED
    assert status.restarts.get(0, 0) >= 1
    runs = boots(status.logs)
    assert len(runs) >= 2
    for (_, _, durable), (_, next_start, _) in itertools.pairwise(runs):
        if durable:
            assert next_start >= durable[-1]  # everything made durable came back
    assert runs[-1][1] > 0
    lifecycle.delete(ref)
    assert (workdir / "results" / "final.txt").read_text().strip() == "40"


def test_sigterm_takes_a_checkpoint_at_once(iterative_home: Path, workdir: Path) -> None:
    """With background checkpoints far apart, only the SIGTERM checkpoint can carry the
    progress a replacement resumes from."""
    script = COUNTER.replace("{target}", "25").replace("{explicit}", "false")
    ref = lifecycle.create(
        spec(
            workdir,
            script,
            spot=0,
            preempt_interval=2.5,
            preempt_notice=3,
            timeout=120,
            storage={"checkpoint_interval": 3600},
        )
    )
    status = wait_done(ref, timeout=100)
    assert status.state == State.SUCCEEDED
    runs = boots(status.logs)
    assert len(runs) >= 2 and runs[1][1] > 0
    assert any(m.state == State.INTERRUPTED for m in status.machines)
    lifecycle.delete(ref)


def test_excluded_files_are_never_uploaded(iterative_home: Path, workdir: Path) -> None:
    (workdir / "keep.txt").write_text("k")
    (workdir / "scratch.tmp").write_text("x" * 1000)
    (workdir / ".venv" / "lib").mkdir(parents=True)
    (workdir / ".venv" / "lib" / "big.so").write_text("y")
    script = (
        "#!/bin/sh\nmkdir -p cache results\necho z > cache/blob\necho r > "
        "results/r.tmp\necho ok > results/ok.txt\n"
    )
    ref = lifecycle.create(
        spec(workdir, script, storage={"exclude": ["*.tmp", ".venv/", "cache/"]})
    )
    wait_done(ref)
    bucket = Path(ref.remote["root"])
    stored = stored_bodies(bucket / "data")
    assert {"keep.txt", "ok.txt"} <= stored
    assert not stored & {"scratch.tmp", "big.so", "blob", "r.tmp"}
    lifecycle.delete(ref)
    assert (workdir / "results" / "ok.txt").exists()
    assert not (workdir / "results" / "r.tmp").exists()


def test_delete_of_a_running_task_stops_it_and_keeps_its_outputs(
    iterative_home: Path, workdir: Path
) -> None:
    script = "#!/bin/sh\nmkdir -p results\necho partial > results/p.txt\nsleep 300\n"
    ref = lifecycle.create(spec(workdir, script))
    wait_for(ref, lambda s: s.state == State.RUNNING)
    wait_for(ref, lambda s: any(m.generation for m in s.machines))  # a checkpoint landed
    pids = [int(p) for p in _machine_pids(iterative_home)]
    lifecycle.delete(ref)
    assert (workdir / "results" / "p.txt").read_text().strip() == "partial"
    assert not any(_alive(pid) for pid in pids)
    nothing_left(iterative_home)


def _machine_pids(home: Path) -> list[str]:
    import json

    return [
        str(m["pid"])
        for f in (home / "groups").glob("*/machines.json")
        for m in json.loads(f.read_text())
    ]


def test_stop_keeps_storage_and_shows_stopped(iterative_home: Path, workdir: Path) -> None:
    script = "#!/bin/sh\nmkdir -p results\necho 1 > results/a\nsleep 300\n"
    ref = lifecycle.create(spec(workdir, script, parallelism=2))
    wait_for(ref, lambda s: s.counts.get("running") == 2)
    lifecycle.stop(ref)
    status = lifecycle.read(ref)
    assert status.state == State.STOPPED and status.done
    assert not any(_alive(int(pid)) for pid in _machine_pids(iterative_home))
    assert lifecycle.pull(ref) == 1  # storage kept: outputs can still come home
    lifecycle.delete(ref)
    nothing_left(iterative_home)


FAILS_AFTER_WRITING = """#!/bin/sh
mkdir -p results
echo epoch-1 > results/model.txt
{ask}
echo half-writ > results/model.txt
echo scratch > results/partial.txt
exit 1
"""


@pytest.mark.parametrize(
    ("ask", "model", "partial"),
    [
        # Consistency points: the failed script's files may be half-written, so the set
        # it declared complete is what comes home.
        ("pulumi-iterative checkpoint >/dev/null", "epoch-1", False),
        # Background mode: there is no declared set; the final checkpoint takes the
        # workdir as the script left it (the torn-file rule still applies).
        ("true", "half-writ", True),
    ],
)
def test_final_checkpoint_after_a_failed_script(
    iterative_home: Path, workdir: Path, ask: str, model: str, partial: bool
) -> None:
    script = FAILS_AFTER_WRITING.replace("{ask}", ask)
    ref = lifecycle.create(spec(workdir, script, storage={"checkpoint_interval": 0}))
    status = wait_done(ref)
    assert status.state == State.FAILED and status.exit_code == 1
    lifecycle.delete(ref)
    assert (workdir / "results" / "model.txt").read_text().strip() == model
    assert (workdir / "results" / "partial.txt").exists() == partial


DAMAGED_THEN_RESUMES = """#!/bin/sh
mkdir -p results
if [ "$TASK_RESTARTS" = 0 ]; then
  echo 1 > results/epoch.txt
  pulumi-iterative checkpoint >/dev/null
  echo durable
  while true; do sleep 0.2; done
fi
echo "resumed=$TASK_RESUMED" > results/second.txt
"""


def test_a_damaged_generation_is_passed_over_and_said_as_an_event(
    iterative_home: Path, workdir: Path
) -> None:
    ref = lifecycle.create(spec(workdir, DAMAGED_THEN_RESUMES, storage={"checkpoint_interval": 0}))
    wait_for(ref, lambda s: "durable" in "".join(s.logs.values()))
    (manifest,) = (Path(ref.remote["root"]) / "data" / "manifests" / "i0").glob("*.json")
    manifest.write_text('{"lineage": "i0", "seq"')  # cut short
    _kill_machines(iterative_home)  # taken away without notice: the group replaces it
    status = wait_done(ref, timeout=90)
    assert status.state == State.SUCCEEDED, status.logs
    (event,) = [e for e in status.events if e.kind == "restore"]
    assert "passed over" in event.message and "i0/00000001" in event.message
    lifecycle.delete(ref)
    assert (workdir / "results" / "second.txt").read_text() == "resumed=0\n"
    assert not (workdir / "results" / "epoch.txt").exists()  # it was only in the damaged one


def _kill_machines(home: Path) -> None:
    """Every machine's processes (its agent's and its script's), like a VM vanishing."""
    import json
    import os
    import signal

    for f in (home / "groups").glob("*/machines.json"):
        for m in json.loads(f.read_text()):
            pgids = [int(m["pid"])]
            script = Path(m["dir"]) / "script.pgid"
            if script.exists():
                pgids.append(int(script.read_text()))
            for pgid in pgids:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
