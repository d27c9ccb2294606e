"""3. Recovery and 4. idle cost, on the local cloud with rehearsed preemption.

Both sides run the same resumable script (TASK_SCRIPT: a step every 0.1 s, its
progress in `state/step` in the workdir, resuming from it) under the same machine
group (`pulumi_iterative.clouds.local.group`, which preempts a machine every
`preempt_interval` seconds: SIGTERM then SIGKILL `preempt_notice` seconds later,
or SIGKILL at once, and starts a replacement). Ours is a task made with
`lifecycle.create`; the baseline is the same group running `baseline.sh machine`
instead of our bootstrap. Both checkpoint every 10 s (our default interval and
the baseline's loop).

The script also appends every step to a truth file outside the workdir (its
`time pid kind step` lines), so:

- work lost per preemption = (last step the killed boot wrote - step the next
  boot resumed from) x 0.1 s;
- time to running again = the replacement's `launch` event (the group's) to its
  script's first line;
- idle cost (benchmark 4, a short script, no preemption, 3 machines per side) =
  the script's `done` line to the group's event that the machine left; for ours
  split into the final checkpoint (to the agent's `finished:` log line) and the rest.

The recovery tasks run side by side (4 per preemption interval), so ours and the
baseline share the machine's load the same way; the idle tasks run after them. The interval is
varied because the work lost without notice depends on where in the 10 s
checkpoint cycle the kill lands: about (interval - boot time) mod 10 s.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_iterative import lifecycle
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.storage import rclone_binary

from . import workload
from .common import HERE, MB, Row, Scratch, log, median, plain_rclone

STEP = 0.1  # seconds of script progress per step
INTERVAL = 10.0  # both sides' checkpoint interval
NOTICE = 5.0  # seconds between SIGTERM and SIGKILL when there is notice
PREEMPTIONS = 2  # per recovery run
IDLE_MACHINES = 3
IDLE_STEPS = 20

TASK_SCRIPT = f"""#!{sys.executable}
import os, time
truth = os.environ["BENCH_TRUTH"] + "-" + os.environ.get("TASK_INDEX", "0") + ".log"
steps, dt = int(os.environ["BENCH_STEPS"]), float(os.environ["BENCH_DT"])

def say(kind, n):
    fd = os.open(truth, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{{time.time():.3f}} {{os.getpid()}} {{kind}} {{n}}\\n".encode())
    os.close(fd)

os.makedirs("state", exist_ok=True)
try:
    n = int(open("state/step").read())
except (FileNotFoundError, ValueError):
    n = 0
say("resume", n)
while n < steps:
    time.sleep(dt)
    n += 1
    with open("state/step.tmp", "w") as fh:
        fh.write(str(n))
    os.replace("state/step.tmp", "state/step")
    say("step", n)
say("done", n)
"""


@dataclass
class Boot:
    pid: str
    resumed_at: float
    resumed_from: int
    last_step: int
    last_at: float
    done_at: float | None = None


def read_truth(path: Path) -> list[Boot]:
    boots: list[Boot] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue
            t, pid, kind, n = float(parts[0]), parts[1], parts[2], int(parts[3])
            if kind == "resume":
                boots.append(Boot(pid, t, n, n, t))
            elif boots and boots[-1].pid == pid:
                boots[-1].last_step, boots[-1].last_at = n, t
                if kind == "done":
                    boots[-1].done_at = t
    return boots


def read_events(folder: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in (folder / "events.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def read_machines(folder: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((folder / "machines.json").read_text())
    except (FileNotFoundError, ValueError):
        return []


@dataclass
class Run:
    """One task on the local cloud: ours (lifecycle) or the baseline (baseline.sh)."""

    side: str  # "ours", "baseline"
    label: str
    truth: Path  # prefix; the script adds -<index>.log
    group: Path = Path()
    ref: Any = None  # ours: the TaskRef
    lost: list[float] = field(default_factory=list)  # seconds of work lost, per preemption
    back: list[float] = field(default_factory=list)  # replacement start to script running
    idle: list[float] = field(default_factory=list)  # script exit to machine gone
    final: list[float] = field(default_factory=list)  # script exit to final checkpoint done

    def truth_of(self, index: int = 0) -> Path:
        return Path(f"{self.truth}-{index}.log")


def env_for(truth: Path, steps: int) -> dict[str, str]:
    return {"BENCH_TRUTH": str(truth), "BENCH_STEPS": str(steps), "BENCH_DT": str(STEP)}


def start_ours(
    scratch: Scratch,
    name: str,
    workdir: Path,
    steps: int,
    interval: float,
    notice: float,
    parallelism: int = 1,
) -> Run:
    truth = scratch.path("truth") / name
    spec = parse_spec(
        {
            "cloud": "local",
            "name": name,
            "script": TASK_SCRIPT,
            "parallelism": parallelism,
            "timeout": 900,
            "environment": env_for(truth, steps),
            "storage": {"workdir": str(workdir), "checkpoint_interval": INTERVAL},
            "preempt_interval": interval,
            "preempt_notice": notice,
        }
    )
    ref = lifecycle.create(spec)
    return Run("ours", name, truth, Path(ref.extra["group"]), ref)


def start_baseline(
    scratch: Scratch,
    name: str,
    workdir: Path,
    steps: int,
    interval: float,
    notice: float,
    parallelism: int = 1,
) -> Run:
    truth = scratch.path("truth") / name
    root = scratch.fresh("baseline-tasks", name)
    bucket, group = root / "bucket", root / "group"
    group.mkdir()
    plain_rclone("copy", str(workdir), str(bucket / "data"))  # what its create uploads
    script = root / "task-script"
    script.write_text(TASK_SCRIPT)
    script.chmod(0o755)
    exports = {
        "RCLONE_REMOTE": str(bucket),
        "RCLONE_BIN": rclone_binary(),
        "TPI_TASK_SCRIPT": str(script),
        **env_for(truth, steps),
    }
    lines = [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    bootstrap = group / "bootstrap.sh"
    bootstrap.write_text(
        "#!/bin/sh\n"
        + "\n".join(lines)
        + f"\nexec /bin/bash {shlex.quote(str(HERE / 'baseline.sh'))} machine\n"
    )
    (group / "group.json").write_text(
        json.dumps(
            {
                "task_id": name,
                "parallelism": parallelism,
                "bootstrap": str(bootstrap),
                "deadline": time.time() + 900,
                "preempt_interval": interval,
                "preempt_notice": notice,
            }
        )
    )
    subprocess.run(
        [sys.executable, "-m", "pulumi_iterative.clouds.local.group", str(group)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    return Run("baseline", name, truth, group)


def stop(run: Run) -> None:
    if run.side == "ours":
        with contextlib.suppress(Exception):
            lifecycle.delete(run.ref, pull_outputs=False)
        return
    pid_file = run.group / "group.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
    for m in read_machines(run.group):  # nothing may outlive the benchmark
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.killpg(int(m["pid"]), signal.SIGKILL)


def analyse_recovery(run: Run) -> None:
    boots = read_truth(run.truth_of())
    launches = sorted(e["time"] for e in read_events(run.group) if e["kind"] == "launch")
    for before, after in itertools.pairwise(boots):
        run.lost.append(max(0, before.last_step - after.resumed_from) * STEP)
        started = max((t for t in launches if t <= after.resumed_at), default=None)
        if started is not None:
            run.back.append(after.resumed_at - started)


def finished_at(machine_dir: Path) -> float | None:
    """When the agent logged `finished:` (after its final checkpoint), from console.log."""
    with contextlib.suppress(FileNotFoundError):
        for line in (machine_dir / "console.log").read_text().splitlines():
            if " agent INFO finished:" in line:
                stamp, ms = line[:23].split(",")
                return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
    return None


def analyse_idle(run: Run) -> None:
    left = {
        e["machine"]: e["time"]
        for e in read_events(run.group)
        if e["kind"] == "terminate" and "left the group" in e["message"]
    }
    for m in read_machines(run.group):
        boots = read_truth(run.truth_of(int(m["index"])))
        done = boots[-1].done_at if boots else None
        if done is None or m["id"] not in left:
            continue
        run.idle.append(left[m["id"]] - done)
        fin = finished_at(Path(m["dir"]))
        if fin is not None:
            run.final.append(fin - done)


def wait_until(condition: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _no_workdirs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("work", "bucket")]


def run(
    scratch: Scratch,
    intervals: tuple[float, ...],
    evidence: Path | None = None,
    *,
    recovery: bool = True,
    idle: bool = True,
) -> list[Row]:
    home = scratch.path("home")
    os.environ["PULUMI_ITERATIVE_HOME"] = str(home)  # our tasks' state, in the scratch space
    workdir = scratch.fresh("wd-recovery")
    workload.make_tree(workdir / "data", 1000, 20 * MB, seed=3)
    (workdir / "state").mkdir()
    runs: list[Run] = []
    idle_runs: list[Run] = []
    if recovery:
        log(
            f"recovery: {4 * len(intervals)} tasks side by side, a preemption every "
            f"{', '.join(f'{i:g}' for i in intervals)} s"
        )
        try:
            for k, interval in enumerate(intervals):
                for notice in (NOTICE, 0.0):
                    for side, start in (("ours", start_ours), ("baseline", start_baseline)):
                        name = f"rec-{side[:4]}-{'n' if notice else 'k'}-{k}"
                        r = start(scratch, name, workdir, 10**6, interval, notice)
                        r.label = "with notice" if notice else "without notice"
                        runs.append(r)
            budget = max(intervals) * (PREEMPTIONS + 1) + 60
            for r in runs:
                if not wait_until(lambda r=r: len(read_truth(r.truth_of())) > PREEMPTIONS, budget):
                    log(f"recovery: {r.side} {r.label}: fewer boots than preemptions in time")
            for r in runs:  # before stop: delete removes our group's records
                analyse_recovery(r)
                if evidence is not None and r.lost and max(r.lost) >= INTERVAL:
                    keep = evidence / r.label.replace(" ", "-") / f"{r.side}-{r.group.name}"
                    shutil.copytree(r.group, keep, dirs_exist_ok=True, ignore=_no_workdirs)
                    log(f"recovery: {r.side} lost {max(r.lost):.1f} s once; see {keep}")
        finally:
            for r in runs:
                stop(r)
    if idle:
        log(f"idle: 2 tasks of {IDLE_MACHINES} machines, a {IDLE_STEPS * STEP:g} s script")
        try:
            for side, start in (("ours", start_ours), ("baseline", start_baseline)):
                idle_runs.append(
                    start(scratch, f"idle-{side[:4]}", workdir, IDLE_STEPS, 0.0, 0.0, IDLE_MACHINES)
                )
            for r in idle_runs:
                wait_until(
                    lambda r=r: (
                        sum(e["kind"] == "terminate" for e in read_events(r.group)) >= IDLE_MACHINES
                    ),
                    60,
                )
            for r in idle_runs:
                analyse_idle(r)
        finally:
            for r in idle_runs:
                stop(r)
    results: dict[tuple[str, str], Run] = {}
    for r in runs:
        key = (r.side, r.label)
        if key in results:
            results[key].lost += r.lost
            results[key].back += r.back
        else:
            results[key] = r
    return rows_for(results, idle_runs)


def rows_for(results: dict[tuple[str, str], Run], idle_runs: list[Run]) -> list[Row]:
    rows = []
    for mode in ("with notice", "without notice") if results else ():
        ours, base = results[("ours", mode)], results[("baseline", mode)]
        if not ours.lost or not base.lost:
            continue
        lost = Row(
            "3. recovery",
            f"work lost per preemption, {mode} ({NOTICE:g} s)"
            if mode == "with notice"
            else f"work lost per preemption, {mode}",
            median(ours.lost),
            median(base.lost),
            unit="s",
            goal="0 s" if mode == "with notice" else f"< {INTERVAL:g} s (one interval)",
            runs=len(ours.lost),
            samples={"ours": ours.lost, "baseline": base.lost},
        )
        lost.met = max(ours.lost) == 0 if mode == "with notice" else max(ours.lost) < INTERVAL
        lost.note = (
            f"max {max(ours.lost):.1f} vs {max(base.lost):.1f} s; "
            f"each: {', '.join(f'{x:.1f}' for x in ours.lost)} vs "
            f"{', '.join(f'{x:.1f}' for x in base.lost)}"
            + (
                "; ours checkpoints on SIGTERM, the baseline does not"
                if mode == "with notice"
                else "; both checkpoint every 10 s: the loss is where the kill lands in that cycle"
            )
        )
        if not lost.met:
            lost.why = (
                f"max {max(ours.lost):.1f} s lost: the last checkpoint did not land before "
                "the kill (see the agent's console logs)."
            )
        rows.append(lost)
        back = Row(
            "3. recovery",
            f"replacement start to script running, {mode}",
            median(ours.back),
            median(base.back),
            runs=len(ours.back),
            samples={"ours": ours.back, "baseline": base.back},
            goal="<= 1.0x",
            note="restore of 1,000 files / 20 MB included; ours starts a Python agent and its "
            "rclone daemon, reads the task, the earlier boots and the newest generation side "
            "by side and restores its packs while the first report goes up; the baseline is "
            "bash and one rclone copy of 1,000 files",
        )
        back.met = back.ratio is not None and back.ratio <= 1.0
        if not back.met:
            back.why = (
                f"{back.spread()}: the agent's Python start (imports, ~0.1-0.4 s here) and the "
                "daemon's first call come before any byte moves. Next: an agent import path "
                "without http.client/ssl, and the restore started before the task is parsed."
            )
        rows.append(back)
    if len(idle_runs) == 2 and idle_runs[0].idle and idle_runs[1].idle:
        ours, base = idle_runs
        rest = [i - f for i, f in zip(ours.idle, ours.final, strict=False)]
        row = Row(
            "4. idle",
            f"machine up after the script exits ({IDLE_MACHINES} machines each)",
            median(ours.idle),
            median(base.idle),
            goal="final checkpoint + < 2 s",
            runs=len(ours.idle),
            samples={"ours": ours.idle, "baseline": base.idle},
        )
        row.met = bool(rest) and max(rest) < 2.0
        if not row.met:
            row.why = f"after the final checkpoint the agent took up to {max(rest or [0]):.2f} s."
        row.note = (
            f"ours: final checkpoint {median(ours.final):.2f} s + {median(rest):.2f} s to leave"
            if rest
            else "no agent log found"
        )
        rows.append(row)
    return rows
