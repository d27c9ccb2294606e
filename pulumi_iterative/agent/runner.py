"""The agent: restore, run, stream logs, checkpoint, report, leave the group.

One agent per machine boot. It reads the task definition from the bucket with
the machine's own identity, restores the newest generation of its index (else
the workdir as uploaded), runs the script under the remaining time budget, and
checkpoints what changed: every `checkpoint_interval` seconds, at once on
SIGTERM or the cloud's preemption notice, when the script asks, and once more at
the end. Its per-boot report in `status/` is what status is built from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from .. import clouds, sync
from ..clouds.base import MachineSide
from ..records import BootConfig, BootReport, TaskDefinition
from ..storage import LOGS, STATUS, TASK_FILE, Rclone, Remote, machine_name
from .bootstrap import decode_config
from .client import SOCKET_ENV

log = logging.getLogger("pulumi_iterative.agent")

LOG_INTERVAL = 3.0  # seconds between log uploads while the script runs
KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for the script
NOTICE_POLL = 5.0  # seconds between polls of the cloud's preemption notice
BASE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "SHELL")


class Agent:
    def __init__(self, config: BootConfig, hooks: MachineSide) -> None:
        self.config, self.hooks = config, hooks
        self.remote = Remote.from_dict(config.remote)
        self.rclone = Rclone(self.remote)
        self.index = hooks.index()
        self.boot = secrets.token_hex(4)
        self.machine = machine_name(self.index, self.boot)
        self.instance = hooks.instance_id()
        self.home = hooks.home()
        self.workdir = self.home / "work"
        self.log_path = self.home / f"{self.machine}.log"
        self.lock = threading.Lock()  # one checkpoint at a time
        self.explicit = False  # the script asked for a consistency point
        self.stop = threading.Event()  # SIGTERM: the machine is going away
        self.report = BootReport(self.machine, self.index, self.boot, self.instance)
        self.uploaded_log_size = -1
        self.task: TaskDefinition | None = None
        self.checkpointer: sync.Checkpointer | None = None

    @property
    def definition(self) -> TaskDefinition:
        if self.task is None:
            raise RuntimeError("the task definition is not read yet")
        return self.task

    # --- the bucket ---------------------------------------------------------------

    def write_report(self, **fields: Any) -> None:
        self.report = self.report.with_(**fields, updated=time.time())
        body = json.dumps(self.report.to_dict(), sort_keys=True).encode() + b"\n"
        self.rclone.write(self.remote.path(STATUS, f"{self.machine}.json"), body)

    def upload_log(self) -> None:
        try:
            size = self.log_path.stat().st_size
        except FileNotFoundError:
            return
        if size != self.uploaded_log_size:
            self.rclone.upload_file(self.log_path, self.remote.path(LOGS, f"{self.machine}.log"))
            self.uploaded_log_size = size

    def note(self, message: str) -> None:
        """A line in the task's log from the agent itself, so users see what happened."""
        stamp = time.strftime("%H:%M:%S")
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"[agent {stamp}] {message}\n")
        log.info(message)

    def checkpoint(self, kind: str, *, background: bool = False) -> int | None:
        if self.checkpointer is None:
            raise RuntimeError("the workdir is not restored yet")
        with self.lock:
            if background and self.explicit:
                # Checked under the lock: the script may have asked while we waited
                # for it, and a background generation after its point may be torn.
                return None
            manifest = self.checkpointer.checkpoint(kind)
            current = self.checkpointer.current
        if manifest is not None:
            self.write_report(generation=manifest.seq)
            self.safe(self.upload_log)  # the log up to a durable point is worth keeping too
        return current.seq if current is not None else None

    # --- the run ------------------------------------------------------------------

    def run(self) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        # One rclone for the whole boot: checkpoints, logs and reports then cost a
        # request each instead of a process each. Started from the main thread (it
        # dies with the thread that started it); it comes up while task.json is read.
        self.rclone.start_daemon()
        self.task = task = TaskDefinition.from_dict(
            json.loads(self.rclone.cat(self.remote.path(TASK_FILE)))
        )
        earlier = [
            e
            for e in self.rclone.list(self.remote.path(STATUS))
            if e["Path"].startswith(f"{self.index}-")
        ]
        restarts = len(earlier)
        self.report = self.report.with_(state="running", started=time.time(), restarts=restarts)
        self.write_report()
        try:
            resumed = self.restore()
        except Exception as exc:
            if self.stop.is_set():  # the shutdown also killed our transfers: not a failure
                return self.taken_away_at_boot()
            return self.finish("failed", None, f"agent could not restore the workdir: {exc}")
        if self.stop.is_set():
            return self.taken_away_at_boot()
        remaining = task.deadline - time.time()
        if remaining <= 0:
            return self.finish("timeout", None, "the task's timeout passed before this boot")
        return self.supervise(self.start_script(restarts, resumed), remaining)

    def restore(self) -> bool:
        lineage = sync.lineage_of(self.index)
        manifest = sync.latest(self.rclone, lineage)
        resumed = manifest is not None
        if manifest is None:
            manifest = sync.latest(self.rclone, sync.BASE)
        checkpointer = sync.Checkpointer(
            self.rclone,
            self.workdir,
            lineage,
            self.machine,
            self.definition.exclude,
            background_gc=True,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        if manifest is not None:
            local = sync.restore(self.rclone, manifest, self.workdir)
            checkpointer.adopt(manifest, local, manifest.base)
            self.explicit = manifest.kind == "explicit"
            self.note(f"restored generation {manifest.gen} ({len(local)} files)")
        # Changes from the kernel from now on, not walks (a walk stays the safety net).
        checkpointer.watch()
        # Only a restored workdir may be checkpointed: a half-restored one would
        # become the newest generation and lose the real one.
        self.checkpointer = checkpointer
        return resumed

    def start_script(self, restarts: int, resumed: bool) -> subprocess.Popen[bytes]:
        script = self.home / "script"
        task = self.definition
        script.write_text(task.script)
        script.chmod(0o700)
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(task.environment)
        env.update(task.secret_environment)
        env.update(
            TASK_INDEX=str(self.index),
            TASK_COUNT=str(task.parallelism),
            TASK_ID=task.task_id,
            TASK_RESTARTS=str(restarts),
            TASK_RESUMED="1" if resumed else "0",
        )
        env[SOCKET_ENV] = self.socket_path
        self.note(
            f"starting script (index {self.index}, restarts {restarts}, resumed {int(resumed)})"
        )
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen(
            [str(script)],
            cwd=self.workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        # The local group kills this session too when it takes the machine away.
        (self.home / "script.pgid").write_text(str(proc.pid))
        return proc

    def supervise(self, proc: subprocess.Popen[bytes], remaining: float) -> int:
        deadline = time.monotonic() + remaining
        interval = self.definition.checkpoint_interval
        next_checkpoint = time.monotonic() + interval if interval else float("inf")
        next_log = time.monotonic() + LOG_INTERVAL
        next_notice = time.monotonic() + NOTICE_POLL
        noticed = False
        while proc.poll() is None:
            now = time.monotonic()
            if self.stop.is_set():
                return self.interrupted(proc, "the machine is being taken away (SIGTERM)")
            if now >= deadline:
                kill_session(proc)
                return self.finish("timeout", proc.returncode, "the task's timeout was reached")
            if now >= next_notice:
                next_notice = now + NOTICE_POLL
                if not noticed and self.hooks.preemption_notice():
                    noticed = True
                    self.note("preemption notice: checkpointing now")
                    self.background_checkpoint("signal")
            if now >= next_checkpoint:
                self.background_checkpoint("auto")
                next_checkpoint = time.monotonic() + interval
            if now >= next_log:
                self.safe(self.upload_log)
                next_log = time.monotonic() + LOG_INTERVAL
            self.stop.wait(0.2)
        code = proc.returncode
        # A shutdown signals the script and the agent at once: a script killed by a
        # signal while our own SIGTERM is arriving was preempted, not failed.
        if code < 0 and self.stop.wait(1.0):
            return self.interrupted(proc, "the machine is being taken away (SIGTERM)")
        return self.finish(
            "succeeded" if code == 0 else "failed",
            code,
            "" if code == 0 else f"the script exited with code {code}",
        )

    def background_checkpoint(self, kind: str) -> None:
        if self.explicit:
            return  # the script chose its consistency points
        self.safe(lambda: self.checkpoint(kind, background=True))

    def taken_away_at_boot(self) -> int:
        """SIGTERM before the script started: nothing new to checkpoint; the group replaces us."""
        reason = "the machine was taken away while booting (SIGTERM)"
        self.safe(
            lambda: self.write_report(state="interrupted", reason=reason, finished=time.time())
        )
        return 143

    def interrupted(self, proc: subprocess.Popen[bytes], reason: str) -> int:
        self.note(reason + ("" if self.explicit else ": checkpointing now"))
        self.background_checkpoint("signal")
        with self.lock:
            pass  # a consistency point the script asked for before the notice lands first
        kill_session(proc)
        self.safe(self.upload_log)
        self.safe(
            lambda: self.write_report(state="interrupted", reason=reason, finished=time.time())
        )
        return 143  # not leaving the group: the cloud replaces this machine

    def finish(self, state: str, code: int | None, reason: str) -> int:
        if self.checkpointer is not None:
            self.safe(lambda: self.checkpoint("final"))
        self.note(f"finished: {state}" + (f" ({reason})" if reason else ""))
        self.safe(self.upload_log)
        self.safe(
            lambda: self.write_report(
                state=state, exit_code=code, reason=reason, finished=time.time()
            )
        )
        self.safe(self.hooks.leave_group)
        return 0

    def safe(self, action: Any) -> None:
        """Transfers fail sometimes; the run must go on and the next try may work."""
        try:
            action()
        except Exception as exc:
            log.warning("%s", exc)

    # --- consistency points requested by the script ---------------------------------

    @property
    def socket_path(self) -> str:
        # Short path: unix socket paths are limited to ~100 bytes.
        return os.path.join(tempfile.gettempdir(), f"iterative-{self.boot}.sock")

    def serve_checkpoints(self) -> None:
        path = self.socket_path
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(8)

        def loop() -> None:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True, name="checkpoint-server").start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            request = conn.makefile("rb").readline().strip()
            if request != b"checkpoint":
                conn.sendall(b"error unknown request\n")
                return
            self.explicit = True
            try:
                seq = self.checkpoint("explicit")
            except Exception as exc:
                reply = f"error {exc}\n"
            else:
                reply = f"ok {seq if seq is not None else 0}\n"
            with contextlib.suppress(OSError):  # the script may be gone (preempted)
                conn.sendall(reply.encode())


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's whole session, then SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pulumi_iterative.agent")
    parser.add_argument("--config", required=True, help="base64 JSON from the bootstrap")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s agent %(levelname)s %(message)s"
    )
    config = decode_config(args.config)
    hooks = clouds.get(config.cloud).machine_side(config)
    try:
        agent = Agent(config, hooks)  # claims an index: on a cloud this talks to the bucket
    except Exception:
        # No index, so no report to write; leaving beats idling until the backstop.
        log.exception("agent could not start")
        with contextlib.suppress(Exception):
            hooks.leave_group()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    agent.serve_checkpoints()
    try:
        return agent.run()
    except Exception as exc:  # report, then leave: an agent that cannot work costs money idle
        if agent.stop.is_set():
            return agent.taken_away_at_boot()
        log.exception("agent failed")
        reason = f"agent error: {exc}"
        agent.safe(lambda: agent.write_report(state="failed", reason=reason, finished=time.time()))
        agent.safe(agent.hooks.leave_group)
        return 0
    finally:
        agent.rclone.stop_daemon()
