"""The local cloud's machine group: the stand-in for an ASG, MIG, VMSS or Job.

A detached process per task. It starts `parallelism` machines (each a process
running the task's stored bootstrap), replaces a machine that dies without
leaving the group (exit code 0 means "left"), rehearses spot preemption when
asked (SIGTERM as the notice, SIGKILL `preempt_notice` seconds later, then a
replacement), stops everything at the deadline as the cloud-side backstop, and
stops on SIGTERM. Its view of the machines is `machines.json`; its activity is
`events.jsonl`; both live in the group folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .machine import PREEMPTING

BACKSTOP_GRACE = 60.0  # after the deadline, the agent's own timeout handling goes first
STOP_GRACE = 20.0  # after SIGTERM on stop, machines get this long to checkpoint
MAX_LOST_IN_A_ROW = 5  # a machine that keeps dying before its script starts is given up on
# PYTHONPATH too: a local machine runs the very package the workstation runs (a checkout
# on PYTHONPATH, not whatever copy is installed).
MACHINE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "SHELL", "PYTHONPATH")
TICK = 0.1
# In a machine's folder: the agent's "my script is over" (agent/runner.py writes it).
SCRIPT_ENDED = "script.ended"


@dataclass
class Machine:
    id: str
    index: int
    pid: int
    dir: str
    state: str  # running, preempting, stopping, terminated, preempted, lost, stopped
    started: float
    ended: float | None = None
    exit_code: int | None = None
    kill_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.state in ("running", "preempting", "stopping")


class Group:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config: dict[str, Any] = json.loads((folder / "group.json").read_text())
        self.machines: list[Machine] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.launched = 0
        self.lost_in_a_row: dict[int, int] = {}
        self.stopping = False
        self.rng = random.Random(self.config.get("seed"))
        self.next_preempt = time.time() + float(self.config.get("preempt_interval") or 0)

    # --- records ----------------------------------------------------------------

    def event(self, kind: str, machine: str, message: str) -> None:
        line = json.dumps(
            {"time": time.time(), "kind": kind, "machine": machine, "message": message}
        )
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def save(self) -> None:
        tmp = self.folder / "machines.json.tmp"
        tmp.write_text(json.dumps([asdict(m) for m in self.machines], indent=1))
        os.replace(tmp, self.folder / "machines.json")

    # --- machines ---------------------------------------------------------------

    def launch(self, index: int, why: str) -> None:
        self.launched += 1
        mid = f"m{self.launched:04d}"
        mdir = self.folder / "machines" / mid
        mdir.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in MACHINE_ENV if k in os.environ}
        started = time.time()
        env.update(
            ITERATIVE_MACHINE_INDEX=str(index),
            ITERATIVE_MACHINE_ID=mid,
            ITERATIVE_MACHINE_DIR=str(mdir),
            ITERATIVE_MACHINE_STARTED=repr(started),  # its "launch time" metadata
        )
        with open(mdir / "console.log", "ab") as console:
            proc = subprocess.Popen(
                ["/bin/sh", self.config["bootstrap"]],
                env=env,
                cwd=mdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[mid] = proc
        self.machines.append(Machine(mid, index, proc.pid, str(mdir), "running", started))
        self.event("launch", mid, f"launched machine {mid} for index {index} ({why})")
        self.save()

    def signal_machine(self, m: Machine, sig: int) -> None:
        """Signal the machine's processes: the bootstrap/agent session and the script's."""
        pgids = [m.pid]
        with contextlib.suppress(FileNotFoundError, ValueError):
            pgids.append(int((Path(m.dir) / "script.pgid").read_text()))
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

    def reap(self) -> None:
        now = time.time()
        for m in self.machines:
            if not m.alive:
                continue
            proc = self.procs[m.id]
            code = proc.poll()
            if code is None:
                if m.kill_at is not None and now >= m.kill_at:
                    self.signal_machine(m, signal.SIGKILL)
                    m.kill_at = None
                continue
            self.signal_machine(m, signal.SIGKILL)  # the VM is gone: nothing of it survives
            m.exit_code, m.ended = code, now
            if m.state == "preempting" and code == 0:
                # Its script had ended and the agent left the group: a finished script
                # is final, even if the rehearsal picked the machine meanwhile.
                m.state = "terminated"
                self.event("terminate", m.id, f"machine {m.id} left the group")
            elif m.state == "preempting":
                m.state = "preempted"
                self.event("terminate", m.id, f"machine {m.id} was preempted")
                if not self.stopping:
                    self.launch(m.index, f"replacing preempted {m.id}")
            elif m.state == "stopping":
                m.state = "stopped"
                self.event("terminate", m.id, f"machine {m.id} stopped")
            elif code == 0:
                m.state = "terminated"
                self.lost_in_a_row.pop(m.index, None)
                self.event("terminate", m.id, f"machine {m.id} left the group")
            elif (Path(m.dir) / "script.pgid").exists():
                # It booted and ran the script: killed from outside (a preemption
                # without notice, the OOM killer), not a machine that cannot boot.
                m.state = "lost"
                self.lost_in_a_row.pop(m.index, None)
                self.event("terminate", m.id, f"machine {m.id} died (exit {code})")
                self.launch(m.index, f"replacing lost {m.id}")
            else:
                m.state = "lost"
                lost = self.lost_in_a_row[m.index] = self.lost_in_a_row.get(m.index, 0) + 1
                if lost >= MAX_LOST_IN_A_ROW:
                    self.event(
                        "give-up",
                        m.id,
                        f"index {m.index} lost {lost} machines in a "
                        "row; not replacing it (see console.log)",
                    )
                else:
                    self.event("terminate", m.id, f"machine {m.id} died (exit {code})")
                    self.launch(m.index, f"replacing lost {m.id}")
            self.save()

    def preempt(self) -> None:
        interval = float(self.config.get("preempt_interval") or 0)
        if not interval or time.time() < self.next_preempt:
            return
        self.next_preempt = time.time() + interval
        # Only machines whose script runs: rehearsing is about resuming work, and a
        # machine taken away at every boot (a loaded laptop) would never get anywhere.
        running = [
            m
            for m in self.machines
            if m.state == "running"
            and (Path(m.dir) / "script.pgid").exists()
            and not (Path(m.dir) / SCRIPT_ENDED).exists()  # a finished script is final
        ]
        if not running:
            return
        m = self.rng.choice(running)
        notice = float(self.config.get("preempt_notice") or 0)
        m.state = "preempting"
        # The notice the agent asks for (machine.py), written before any signal, so an
        # agent that sees its script end in the same instant still knows why.
        with contextlib.suppress(OSError):
            (Path(m.dir) / PREEMPTING).write_text(str(time.time()))
        if notice > 0:
            self.signal_machine(m, signal.SIGTERM)
            m.kill_at = time.time() + notice
            self.event(
                "interrupt", m.id, f"rehearsed preemption of {m.id}: SIGTERM, killed in {notice:g}s"
            )
        else:
            self.signal_machine(m, signal.SIGKILL)
            self.event("interrupt", m.id, f"rehearsed preemption of {m.id}: killed without notice")
        self.save()

    def stop_all(self, why: str, grace: float) -> None:
        for m in self.machines:
            if m.alive:
                m.state = "stopping"
                self.signal_machine(m, signal.SIGTERM)
                m.kill_at = time.time() + grace
        self.event("stop", "", why)
        self.save()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        for index in range(int(self.config["parallelism"])):
            self.launch(index, "task start")
        deadline = float(self.config["deadline"]) + BACKSTOP_GRACE
        stop_sent = False
        while True:
            self.reap()
            if not stop_sent and (self.stopping or time.time() >= deadline):
                self.stopping = True
                stop_sent = True
                grace = STOP_GRACE if time.time() < deadline else 5.0
                self.stop_all(
                    "stop requested"
                    if time.time() < deadline
                    else "deadline backstop: stopping every machine",
                    grace,
                )
            if not self.stopping:
                self.preempt()
            if not any(m.alive for m in self.machines):
                break
            time.sleep(TICK)
        self.event("done", "", "the group has no machines left")
        self.save()


def daemonize(folder: Path) -> None:
    """Detach from the launcher so the group outlives the provider process."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    log = open(folder / "group.log", "ab")  # noqa: SIM115 - the daemon's stdout for life
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    daemonize(folder)
    (folder / "group.pid").write_text(str(os.getpid()))
    try:
        Group(folder).run()
    finally:
        (folder / "group.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
