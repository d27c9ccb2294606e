"""The agent: restore, run, stream logs, checkpoint, report, leave the group.

One agent per machine boot. It reads the task definition from the bucket with
the machine's own identity, restores the newest generation of its index (else
the workdir as uploaded), runs the script under the remaining time budget, and
checkpoints what changed: every `checkpoint_interval` seconds, at once on
SIGTERM or the cloud's preemption notice, when the script asks, and once more at
the end. Its per-boot report in `status/` is what status is built from. With a
budget, it also sums every boot's report at the task's prices and stops the script
like the timeout does (state `budget`) before the spend would pass it.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import clouds, cost, reportnames, sync
from ..clouds.base import MachineSide
from ..errors import LeftGroup
from ..logsegments import LogShipper
from ..records import BootConfig, BootReport, TaskDefinition
from ..storage import STATUS, TASK_FILE, Rclone, Remote, machine_name
from .bootstrap import (
    EXIT_INTERRUPTED,
    EXIT_LEAVE_FAILED,
    EXIT_LEFT,
    MACHINE_CODE_FILE,
    decode_config,
)
from .client import SOCKET_ENV
from .echo import LogEcho

log = logging.getLogger("pulumi_iterative.agent")

LOG_INTERVAL = 3.0  # seconds between log uploads while the script runs
KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for the script
NOTICE_POLL = 5.0  # seconds between polls of the cloud's preemption notice
SIGNAL_RACE = 1.0  # seconds a script that died of a signal waits for the agent's SIGTERM
SCRIPT_ENDED = "script.ended"  # in the machine's home: the script is over, whatever follows
BASE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "SHELL")


class Agent:
    def __init__(self, config: BootConfig, hooks: MachineSide, boot_dir: str | None = None) -> None:
        self.config, self.hooks = config, hooks
        self.boot_dir = Path(boot_dir) if boot_dir else None
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
        self.report = BootReport(
            self.machine,
            self.index,
            self.boot,
            self.instance,
            machine_type=str(_metadata(hooks, "machine_type") or ""),
            launched=_metadata(hooks, "launched"),
        )
        self.report_lock = threading.Lock()
        self.report_writes = 0
        self.report_name = ""
        self.log_lock = threading.Lock()
        self.log_shipper = LogShipper(self.rclone, self.log_path, self.machine)
        # MachineSide.echo_log (optional): the script's output on stdout too (k8s: pod logs)
        echoing = getattr(hooks, "echo_log", False)
        self.echo = LogEcho(self.log_path, sys.stdout.buffer) if echoing else None
        self.task: TaskDefinition | None = None
        self.checkpointer: sync.Checkpointer | None = None
        # How long this boot's last checkpoint took: the budget check expects the final
        # one to take about as long (machines bill through it).
        self.checkpoint_seconds = 0.0

    @property
    def definition(self) -> TaskDefinition:
        if self.task is None:
            raise RuntimeError("the task definition is not read yet")
        return self.task

    # --- the bucket ---------------------------------------------------------------

    def write_report(self, **fields: Any) -> None:
        """A new object whose name carries the report (status reads names only), then
        the previous one removed: a reader that lists in between takes the newer."""
        with self.report_lock:
            self.report = self.report.with_(**fields, updated=time.time())
            self.report_writes += 1
            name = reportnames.object_name(self.report, self.report_writes)
            self.rclone.write(self.remote.path(STATUS, name), reportnames.body(self.report))
            previous, self.report_name = self.report_name, name
            if previous:
                try:
                    self.rclone.delete_file(self.remote.path(STATUS, previous))
                except Exception as exc:  # a stale report costs a listing entry, not truth
                    log.warning("could not remove the previous report: %s", exc)
        self.leave_crash_report()

    def leave_crash_report(self) -> None:
        """The report the bootstrap's supervisor stores if this agent dies (OOM, a bug):
        this boot's own, marked failed, with the reason and time left for it to fill."""
        if self.boot_dir is None:
            return
        crashed = {
            **self.report.to_dict(),
            "state": "failed",
            "reason": "@REASON@",
            "finished": "@NOW@",
        }
        text = json.dumps(crashed, sort_keys=True).replace('"@NOW@"', "@NOW@") + "\n"
        tmp = self.boot_dir / "crash-report.json.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.boot_dir / "crash-report.json")
        # A whole object beside the named ones: status takes it when it is the later word
        # (reportnames.read_all).
        (self.boot_dir / "crash-report.path").write_text(f"{STATUS}/{self.machine}.json")

    def upload_log(self, *, force: bool = True) -> None:
        """Ship the log's new bytes as a segment (forced: now; else when the shipper's
        interval says so)."""
        with self.log_lock:
            self.log_shipper.ship(force=force)

    def echo_log(self, *, final: bool = False) -> None:
        if self.echo is not None:
            echo = self.echo
            self.safe(lambda: echo.pump(final=final))

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
            began = time.monotonic()
            manifest = self.checkpointer.checkpoint(kind)
            self.checkpoint_seconds = time.monotonic() - began
            current = self.checkpointer.current
        if manifest is not None:
            self.write_report(generation=manifest.seq, checkpointed=time.time())
            self.safe(lambda: self.upload_log(force=False))  # on its interval, not per checkpoint
        return current.seq if current is not None else None

    # --- the run ------------------------------------------------------------------

    def run(self) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        # One rclone for the whole boot: checkpoints, logs and reports then cost a
        # request each instead of a process each. Started from the main thread (it
        # dies with the thread that started it); it comes up while task.json is read.
        self.rclone.start_daemon()
        # The task, the earlier boots and the newest generation are read side by side,
        # and the "running" report goes up while the workdir is restored: a
        # replacement's script starts after one round trip plus the restore.
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="boot") as pool:
            reading = pool.submit(self.rclone.cat, self.remote.path(TASK_FILE))
            listing = pool.submit(self.rclone.list, self.remote.path(STATUS), recursive=True)
            self.task = task = TaskDefinition.from_dict(json.loads(reading.result()))
            earlier = {
                e["Path"].split("/")[0].removesuffix(".json")
                for e in listing.result()
                if e["Path"].startswith(f"{self.index}-")
            }
            restarts = len(earlier)
            self.report = self.report.with_(state="running", started=time.time(), restarts=restarts)
            reporting = pool.submit(self.write_report)
            try:
                resumed = self.restore()
            except Exception as exc:
                reporting.result()
                if self.stop.is_set():  # the shutdown also killed our transfers: not a failure
                    return self.taken_away_at_boot()
                return self.finish("failed", None, f"agent could not restore the workdir: {exc}")
            reporting.result()
        if self.stop.is_set():
            return self.taken_away_at_boot()
        remaining = task.deadline - time.time()
        if remaining <= 0:
            return self.finish("timeout", None, "the task's timeout passed before this boot")
        spent = self.budget_spent()
        if spent is not None:
            return self.finish("budget", None, spent + " before this boot")
        return self.supervise(self.start_script(restarts, resumed), remaining)

    def restore(self) -> bool:
        lineage = sync.lineage_of(self.index)
        checkpointer = sync.Checkpointer(
            self.rclone,
            self.workdir,
            lineage,
            self.machine,
            self.definition.exclude,
            say=self.note,
            background_gc=True,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        found = sync.restore_newest_whole(self.rclone, lineage, self.workdir)
        manifest = found.manifest
        if found.passed_over:
            kept = manifest.gen if manifest is not None else "nothing"
            notice = (
                f"restored {kept}: newer generations are damaged and were passed over "
                f"({'; '.join(found.passed_over)})"
            )
            self.note(notice)
            self.safe(lambda: self.write_report(notice=notice))
        if manifest is not None:
            checkpointer.adopt(manifest, found.local, manifest.base)
            self.explicit = manifest.kind == "explicit"
            self.note(f"restored generation {manifest.gen} ({len(found.local)} files)")
        # Bodies of a generation whose manifest never landed (or of a damaged one) are
        # used by nothing: they go before this boot writes generations of its own.
        self.safe(lambda: sync.remove_orphans(self.rclone, lineage, found))
        # Changes from the kernel from now on, not walks (a walk stays the safety net).
        checkpointer.watch()
        # Only a restored workdir may be checkpointed: a half-restored one would
        # become the newest generation and lose the real one.
        self.checkpointer = checkpointer
        return manifest is not None and manifest.lineage == lineage

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
        next_notice = time.monotonic()  # at once: a cloud's notice watch starts with it
        pricing = cost.Pricing.from_dict(self.definition.pricing)
        next_budget = time.monotonic() + pricing.check_every() if pricing.budget else float("inf")
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
            if now >= next_budget:
                spent = self.budget_spent()
                if spent is not None:
                    kill_session(proc)  # stopped by us: no exit code of its own
                    return self.finish("budget", None, spent)
                next_budget = time.monotonic() + pricing.check_every()
            if now >= next_checkpoint:
                self.background_checkpoint("auto")
                next_checkpoint = time.monotonic() + interval
            if now >= next_log:
                self.safe(lambda: self.upload_log(force=False))
                next_log = time.monotonic() + LOG_INTERVAL
            self.echo_log()
            self.stop.wait(0.2)
        code = proc.returncode
        self.script_ended()
        # A boot whose machine is being taken away is interrupted whatever the script's
        # exit code: most scripts exit 143 on SIGTERM, some trap it and exit 0, and
        # either way the group's replacement carries the index on.
        if self.taken_away(code, noticed):
            return self.interrupted(proc, "the machine is being taken away (SIGTERM)")
        return self.finish(
            "succeeded" if code == 0 else "failed",
            code,
            "" if code == 0 else f"the script exited with code {code}",
        )

    def script_ended(self) -> None:
        """Tell the machine's group the script is over: a finished script is final, so a
        rehearsed preemption must not pick this machine (the local group reads this)."""
        with contextlib.suppress(OSError):
            (self.home / SCRIPT_ENDED).write_text(str(time.time()))

    def taken_away(self, code: int, noticed: bool) -> bool:
        """Is this machine being taken away as its script ends?"""
        if noticed or self.stop.is_set() or self.hooks.preemption_notice():
            return True
        # A shutdown signals the script and the agent at once, and the script may end
        # before our own SIGTERM handler has run or the notice is seen: a script that
        # died of a signal (or exited 128+N, as shells do) waits a moment for either.
        if not (code < 0 or code > 128):
            return False
        end = time.monotonic() + SIGNAL_RACE
        while time.monotonic() < end:
            if self.stop.wait(0.1) or self.hooks.preemption_notice():
                return True
        return False

    def budget_spent(self) -> str | None:
        """Why the task must stop for its budget, or None (no budget, or money left).

        The spend is summed from every boot's report (each from its machine's launch, at
        its type's price), refreshed first with this boot's heartbeat. It stops when the
        spend by the time every machine has stopped (the next check, the final checkpoint,
        the cloud's shutdown) would pass the budget, so the spend at the end stays in it."""
        pricing = cost.Pricing.from_dict(self.definition.pricing)
        if not pricing.budget:
            return None
        try:
            self.write_report()  # the heartbeat: this boot still runs, as of now
            boots, _ = reportnames.read_all(self.rclone)  # one listing: names carry reports
        except Exception as exc:  # the next check may read; the backstop stays
            log.warning("budget check failed: %s", exc)
            return None
        now, stale = time.time(), 3 * pricing.check_every()
        # Stopping takes the script's grace after SIGTERM and a final checkpoint.
        horizon = cost.stop_horizon(pricing, KILL_GRACE + self.checkpoint_seconds)
        at_end, _ = cost.spent_by_reports(pricing, boots, now=now, stale_after=stale, ahead=horizon)
        if not cost.over_budget(pricing, at_end):
            return None
        spent, running = cost.spent_by_reports(pricing, boots, now=now, stale_after=stale)
        cur = pricing.currency
        return (
            f"the task's budget of {cost.money(pricing.budget, cur)} is reached "
            f"({cost.money(spent, cur)} spent, {running} machine(s) running)"
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
        return EXIT_INTERRUPTED

    def interrupted(self, proc: subprocess.Popen[bytes], reason: str) -> int:
        self.note(reason + ("" if self.explicit else ": checkpointing now"))
        self.background_checkpoint("signal")
        with self.lock:
            pass  # a consistency point the script asked for before the notice lands first
        kill_session(proc)
        self.echo_log(final=True)
        self.safe(self.upload_log)
        self.safe(
            lambda: self.write_report(state="interrupted", reason=reason, finished=time.time())
        )
        return EXIT_INTERRUPTED  # not leaving the group: the cloud replaces this machine

    def finish(self, state: str, code: int | None, reason: str) -> int:
        # The final checkpoint. In consistency-point mode only a script that succeeded
        # adds one: after a failure or a timeout the files may be half-written, so the
        # last set the script declared complete stays the newest (what pull brings home).
        if self.checkpointer is not None and (state == "succeeded" or not self.explicit):
            self.safe(lambda: self.checkpoint("final"))
        elif self.checkpointer is not None and self.checkpointer.current is not None:
            kept = self.checkpointer.current.gen
            self.note(f"no final checkpoint after {state}: keeping consistency point {kept}")
        if self.checkpointer is not None:
            self.safe(self.checkpointer.close)  # the cleanup behind it, before leaving
        self.note(f"finished: {state}" + (f" ({reason})" if reason else ""))
        self.echo_log(final=True)
        self.safe(self.upload_log)
        self.safe(
            lambda: self.write_report(
                state=state, exit_code=code, reason=reason, finished=time.time()
            )
        )
        return self.leave(state, code)

    def leave(self, state: str, code: int | None) -> int:
        """Leave the group; if that fails, the bootstrap's supervisor ends the machine."""
        try:
            self.hooks.leave_group()
        except Exception as exc:
            log.error("could not leave the group: %s", exc)
            return EXIT_LEAVE_FAILED
        self.leave_machine_code(state, code)
        return EXIT_LEFT

    def leave_machine_code(self, state: str, code: int | None) -> None:
        """The code the machine ends with after leaving (the bootstrap exits with it):
        0 unless the cloud's scheduler reads how the boot ended (MachineSide.exit_code)."""
        ask = getattr(self.hooks, "exit_code", None)
        machine_code = ask(state, code) if ask is not None else 0
        if machine_code and self.boot_dir is not None:
            path = self.boot_dir / MACHINE_CODE_FILE
            self.safe(lambda: path.write_text(f"{machine_code}\n"))

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


def _metadata(hooks: MachineSide, name: str) -> Any:
    """An optional MachineSide fact (base.py), or None: the budget then counts from the
    agent's own start, and a metadata hiccup never stops a boot."""
    ask = getattr(hooks, name, None)
    if ask is None:
        return None
    try:
        return ask()
    except Exception as exc:
        log.warning("machine metadata %s: %s", name, exc)
        return None


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
    parser.add_argument("--boot-dir", default=None, help="the bootstrap's folder for this boot")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s agent %(levelname)s %(message)s"
    )
    config = decode_config(args.config)
    hooks = clouds.get(config.cloud).machine_side(config)
    try:
        # Claims an index: on a cloud this talks to the bucket.
        agent = Agent(config, hooks, boot_dir=args.boot_dir)
    except LeftGroup as exc:
        log.info("%s", exc)
        return EXIT_LEFT
    except Exception:
        # No index, so no report of its own: the bootstrap's supervisor stores one with
        # this traceback in the boot's log, and ends the machine.
        log.exception("agent could not start")
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
        return agent.leave("failed", None)
    finally:
        agent.rclone.stop_daemon()
