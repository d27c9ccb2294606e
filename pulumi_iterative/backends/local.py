"""The embedded default cloud: machines are local processes, the bucket a folder.

It needs no account, runs the same bootstrap and agent as a cloud machine, and
rehearses spot preemption (see local_group.py), so a user can try a task and its
resume logic before paying for a cloud.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..agent.bootstrap import Install
from ..errors import IterativeError
from ..paths import home
from ..spec import TaskSpec
from ..status import CloudMachine, Event
from ..steps import Step
from ..storage import Remote
from ..task import TaskRef

ALIVE = {"running": True, "preempting": True, "stopping": True}  # native state -> alive


class LocalBackend:
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
            extra={"group": str(root / "groups" / task_id)},
        )

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        bucket = Path(ref.remote["root"])
        return [
            Step(
                "Create bucket folder",
                lambda: bucket.mkdir(parents=True, exist_ok=True),
                lambda: shutil.rmtree(bucket, ignore_errors=True),
            )
        ]

    def machine_steps(self, ref: TaskRef, spec: TaskSpec | None, bootstrap: str) -> list[Step]:
        folder = Path(ref.extra["group"])

        def start() -> None:
            assert spec is not None
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "bootstrap.sh").write_text(bootstrap)
            (folder / "group.json").write_text(
                json.dumps(
                    {
                        "task_id": ref.task_id,
                        "parallelism": spec.parallelism,
                        "bootstrap": str(folder / "bootstrap.sh"),
                        "deadline": ref.deadline,
                        "preempt_interval": spec.preempt_interval,
                        "preempt_notice": spec.preempt_notice,
                    }
                )
            )
            launcher = subprocess.run(
                [sys.executable, "-m", "pulumi_iterative.backends.local_group", str(folder)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
                timeout=30,
            )
            if launcher.returncode != 0:
                raise IterativeError(launcher.stderr.decode(errors="replace")[-500:])
            if not _wait_for(lambda: (folder / "machines.json").exists(), 15):
                raise IterativeError(f"the machine group did not start; see {folder}/group.log")

        def remove() -> None:
            self.stop(ref)
            shutil.rmtree(folder, ignore_errors=True)

        return [Step("Start machine group", start, remove)]

    def install(self, ref: TaskRef) -> Install:
        return Install.preinstalled(sys.executable)

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        path = Path(ref.extra["group"]) / "machines.json"
        try:
            records = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [CloudMachine(r["id"], ALIVE.get(r["state"], False)) for r in records]

    def events(self, ref: TaskRef) -> list[Event]:
        path = Path(ref.extra["group"]) / "events.jsonl"
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
        folder = Path(ref.extra["group"])
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
