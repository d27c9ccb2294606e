"""The embedded default cloud: machines are local processes, the bucket a folder.

It needs no account, runs the same bootstrap and agent as a cloud machine, and
rehearses spot preemption (see group.py), so a user can try a task and its
resume logic before paying for a cloud.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ...agent.bootstrap import Install
from ...errors import IterativeError
from ...paths import home
from ...spec import TaskSpec
from ...status import CloudMachine, Event
from ...steps import Step
from ...storage import Remote
from ...task import TaskRef
from ..base import Made
from ..place import PlaceRecord

ALIVE = {"running": True, "preempting": True, "stopping": True}  # native state -> alive


@dataclass(frozen=True)
class Place(PlaceRecord):
    """The local part of a TaskRef: the folder of the task's machine group."""

    group: str
    version: int = 1


class Backend:
    name = "local"

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        root = home()
        now = time.time()
        return TaskRef(
            task_id=task_id,
            cloud="local",
            region=spec.region,
            remote=Remote(str(root / "buckets" / task_id)).to_dict(),
            parallelism=spec.parallelism,
            created=now,
            deadline=now + spec.timeout,
            workdir=spec.storage.workdir,
            output=spec.storage.output,
            extra=Place(str(root / "groups" / task_id)).to_dict(),
        )

    def check_access(self, ref: TaskRef) -> None:
        return None  # no account: the caller's own files and processes

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        bucket = Path(ref.remote["root"])
        return [
            Step(
                "Create bucket folder",
                lambda: bucket.mkdir(parents=True, exist_ok=True),
                Made.of("bucket", path=str(bucket)),
            )
        ]

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        folder = Path(Place.from_ref(ref).group)

        def start() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "bootstrap.sh").write_text(bootstrap)
            (folder / "group.json").write_text(
                json.dumps(
                    {
                        "task_id": ref.task_id,
                        "parallelism": spec.parallelism,
                        "bootstrap": str(folder / "bootstrap.sh"),
                        "deadline": ref.backstop_at,  # the sooner of timeout and budget
                        "preempt_interval": spec.preempt_interval,
                        "preempt_notice": spec.preempt_notice,
                    }
                )
            )
            launcher = subprocess.run(
                [sys.executable, "-m", "pulumi_iterative.clouds.local.group", str(folder)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
                timeout=30,
            )
            if launcher.returncode != 0:
                raise IterativeError(launcher.stderr.decode(errors="replace")[-500:])
            if not _wait_for(lambda: (folder / "machines.json").exists(), 15):
                raise IterativeError(f"the machine group did not start; see {folder}/group.log")

        return [Step("Start machine group", start, Made.of("group", path=str(folder)))]

    def remove(self, ref: TaskRef, made: Made) -> None:
        if made.kind == "group":
            self.stop(ref)
        if made.kind in ("group", "bucket"):
            shutil.rmtree(made.get("path"), ignore_errors=True)
        else:
            raise IterativeError(f"the local cloud makes no {made.kind!r}")

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        return [
            Made.of("bucket", path=str(ref.remote["root"])),
            Made.of("group", path=Place.from_ref(ref).group),
        ]

    def install(self, ref: TaskRef) -> Install:
        return replace(Install.preinstalled(sys.executable), ending=_ending(ref))

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        path = _on_this_workstation(ref) / "machines.json"
        try:
            records = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [
            CloudMachine(
                r["id"],
                ALIVE.get(r["state"], False),
                launched=r.get("started"),
                ended=r.get("ended"),
            )
            for r in records
        ]

    def events(self, ref: TaskRef) -> list[Event]:
        path = _on_this_workstation(ref) / "events.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            out.append(Event(float(e["time"]), e["kind"], e["machine"], e["message"]))
        return out

    def stop(self, ref: TaskRef) -> None:
        folder = _on_this_workstation(ref)
        pid = _read_pid(folder / "group.pid")
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            # The group gives machines time for a last checkpoint, then kills them.
            if not _wait_for(lambda: not _alive(pid), 40):
                os.kill(pid, signal.SIGKILL)
        # A group that died (or was killed) may leave machines behind: none may outlive stop.
        for m in _records(folder):
            for pgid in (m.get("pid"), _read_pid(Path(m["dir"]) / "script.pgid")):
                if pgid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(pgid), signal.SIGKILL)


def _ending(ref: TaskRef) -> str:
    """A local machine's failure path: its report goes into the bucket folder, and it
    leaves the group by exiting 0 (the group replaces only machines that die)."""
    root = shlex.quote(str(ref.remote["root"]))
    return f"""\
boot_upload() {{
  mkdir -p "$(dirname {root}/"$2")" && cp "$1" {root}/"$2.tmp" && mv {root}/"$2.tmp" {root}/"$2"
}}
boot_end() {{
  exit 0
}}"""


def _on_this_workstation(ref: TaskRef) -> Path:
    """The task's group folder, if this is the workstation that made it.

    A local task's machines and bucket are folders and processes of the workstation
    that created it. Elsewhere (a teammate's machine, CI) even the folder that holds
    the groups is missing: say so, instead of reading the task as gone and letting
    Pulumi forget a task that still runs.
    """
    folder = Path(Place.from_ref(ref).group)
    # The groups folder, or (a create cut short before its group) the buckets folder.
    if not folder.parent.is_dir() and not Path(ref.remote["root"]).parent.is_dir():
        raise IterativeError(
            f"task {ref.task_id} runs on the local cloud of the workstation that created "
            f"it, and its folders ({folder.parent}) are not on this one; refresh or "
            "destroy it from that workstation (if its folders are gone for good, "
            "`pulumi state delete` drops the task from the stack)"
        )
    return folder


def _records(folder: Path) -> list[dict]:
    try:
        return json.loads((folder / "machines.json").read_text())
    except (FileNotFoundError, ValueError):
        return []


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie answers kill(0) but is gone; an init that does not reap leaves them.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _wait_for(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
