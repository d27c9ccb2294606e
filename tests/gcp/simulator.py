"""The machine simulator: each instance the fake's groups make becomes a local process
running the very startup script the backend stored.

For every RUNNING instance, the instance is read back through the compute API
(`instances.get`) and its `startup-script` metadata value is written to the machine's
folder and run with /bin/sh, as GCE's guest agent does. The process gets what a GCE
machine has, plus pointers at the emulators:

- GCE_METADATA_HOST / GCE_METADATA_IP: a FakeMetadata of its own, serving its name,
  zone, project, attributes and the *instance's service account* token (registered
  with the fake GCP, which enforces IAM on it; never the caller's credentials);
- PULUMI_ITERATIVE_GCP_ENDPOINT: the compute fake (as the agent's leave reads it); no
  GCS address: rclone, the wheel's fetch and a failed boot's upload all take it from
  the task's remote settings, stored at create;
- HOME: the machine's own folder (the agent's home is under it);
- PULUMI_ITERATIVE_AGENT_PYTHON: the bootstrap's documented skip switch (with
  `python=""` the real install path runs instead; `moved` relocates its /opt folders;
  the machine has no systemd, so the agent is supervised inline, never a unit);
- PATH starting with a folder whose `shutdown` and `poweroff` only note that the
  machine powered itself off: GCE then stops the instance (fake_mig.guest_shutdown).

A watcher thread plays GCE: it boots instances as groups make them and shuts down
(SIGTERM, then SIGKILL after a grace) the process of any instance that is
STOPPING or gone. `preempt` gives GCE's notice, then takes the instance away.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import failed_boots
from tests.gcp.fake_compute import public
from tests.gcp.fake_gcp import PROJECT, PROJECT_NUMBER, FakeGcp
from tests.gcp.fake_gcs import FakeGcs
from tests.gcp.fake_metadata import FakeMetadata
from tests.gcp.fake_mig import guest_shutdown

SHUTDOWN_GRACE = 20.0
SYSTEMD_RUNNING = "/run/systemd/system"  # the bootstrap's test for "systemd is PID 1"
TICK = 0.1


@dataclass
class SimMachine:
    key: str  # instance id: unique per boot, even when a name comes back
    name: str
    folder: Path
    proc: subprocess.Popen[bytes]
    metadata: FakeMetadata
    startup_script: str
    shutdown_at: float | None = None
    killed: bool = False
    powered_off_handled: bool = False

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def powered_off(self) -> bool:
        return (self.folder / "powered-off").exists()

    def console(self) -> str:
        try:
            return (self.folder / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


class MachineSimulator:
    def __init__(self, fake: FakeGcp, gcs: FakeGcs, root: Path, *, python: str) -> None:
        self.fake, self.gcs, self.root, self.python = fake, gcs, root, python
        self.root.mkdir(parents=True, exist_ok=True)
        self.bin = failed_boots.power_off_stubs(self.root)
        self.path_prefix: list[str] = [str(self.bin)]  # tests may put more stubs first
        self.extra_env: dict[str, str] = {}
        # Folders moved for a test that runs the real install path: {"/opt/": "<tmp>/opt/"}.
        self.moved: dict[str, str] = {}
        self.machines: dict[str, SimMachine] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> MachineSimulator:
        if self.thread is None:
            self.thread = threading.Thread(target=self._watch, daemon=True, name="gce-sim")
            self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep simulating; tests show these on failure
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stopping.wait(TICK)

    def tick(self) -> None:
        with self.fake.lock:
            seen = {str(i["id"]): dict(i) for i in self.fake.instances.values()}
        now = time.time()
        for key, instance in seen.items():
            if key not in self.machines and instance["status"] == "RUNNING":
                self.boot(instance)
        for key, machine in list(self.machines.items()):
            if not (machine.running or machine.powered_off_handled) and machine.powered_off:
                machine.powered_off_handled = True  # the OS halted: GCE stops the instance
                guest_shutdown(self.fake, key)
            leaving = key not in seen or seen[key]["status"] != "RUNNING"
            if leaving and machine.running and machine.shutdown_at is None:
                machine.shutdown_at = now
                self._signal(machine, signal.SIGTERM)  # the OS shutting down
            elif (
                machine.running
                and machine.shutdown_at
                and now > machine.shutdown_at + SHUTDOWN_GRACE
            ):
                self._signal(machine, signal.SIGKILL)

    def boot(self, seen: dict[str, Any]) -> SimMachine:
        from google.cloud import compute_v1
        from google.oauth2.credentials import Credentials

        zone = seen["zone"].rsplit("/", 1)[-1]
        # GCE reading its own record (a token of its own, so audits can tell it apart)
        client = compute_v1.InstancesClient(
            credentials=Credentials(token="gce-hypervisor"),
            transport="rest",
            client_options={"api_endpoint": self.fake.endpoint},
        )
        stored = client.get(project=PROJECT, zone=zone, instance=seen["name"])
        items = {i.key: i.value for i in stored.metadata.items}
        script = items.get("startup-script", "")
        for old, new in self.moved.items():
            script = script.replace(old, new)
        account = stored.service_accounts[0].email if stored.service_accounts else "default"
        scopes = list(stored.service_accounts[0].scopes) if stored.service_accounts else []
        meta = FakeMetadata(
            project=PROJECT,
            project_number=PROJECT_NUMBER,
            instance=public(seen),
            account=account,
            scopes=scopes,
            tokens=self.fake.tokens,
        )
        folder = self.root / f"{seen['name']}-{seen['id']}"
        folder.mkdir(parents=True, exist_ok=True)
        # A simulated machine has no systemd, even on a host that runs it (a CI runner):
        # the real install path then supervises the agent inline, as the bootstrap says.
        script = script.replace(SYSTEMD_RUNNING, str(folder / "no-systemd"))
        (folder / "startup-script").write_text(script)
        env = {
            "PATH": ":".join([*self.path_prefix, os.environ.get("PATH", "/usr/bin:/bin")]),
            "LANG": "C.UTF-8",
            "HOME": str(folder),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "PULUMI_ITERATIVE_GCP_ENDPOINT": self.fake.endpoint,
            "PULUMI_ITERATIVE_AGENT_PYTHON": self.python,
            **meta.env(),
            **self.extra_env,
        }
        if not self.python:
            del env["PULUMI_ITERATIVE_AGENT_PYTHON"]  # the real install path
        if os.environ.get("PYTHONPATH"):  # the code under test, when run from a work tree
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        with open(folder / "console.log", "ab") as console:
            proc = subprocess.Popen(
                ["/bin/sh", str(folder / "startup-script")],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        machine = SimMachine(str(seen["id"]), seen["name"], folder, proc, meta, script)
        with self.lock:
            self.machines[machine.key] = machine
        return machine

    # --- what tests do ------------------------------------------------------------------

    def _signal(self, machine: SimMachine, sig: int) -> None:
        groups = [machine.proc.pid]
        with contextlib.suppress(FileNotFoundError, ValueError):
            groups.append(int((machine.folder / "pulumi-iterative" / "script.pgid").read_text()))
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

    def live(self, name: str) -> SimMachine:
        found = [m for m in self.machines.values() if m.name == name and m.running]
        if not found:
            raise KeyError(name)
        return found[-1]

    def preempt(self, name: str, notice: float = 1.0) -> None:
        """GCE's preemption: the notice in the metadata server, then the instance is deleted."""
        self.live(name).metadata.preempt()
        time.sleep(notice)
        self.fake.preempt(name)

    def kill(self, name: str) -> None:
        """A hard loss: the process vanishes without notice or last checkpoint."""
        machine = self.live(name)
        machine.killed = True
        self._signal(machine, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            machine.proc.wait(10)

    def wait_for(self, condition: Any, what: str, timeout: float = 60.0) -> Any:
        end = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}\n{self.report()}")
            time.sleep(0.2)

    def wait_status(self, ref: Any, condition: Any, timeout: float = 120.0) -> Any:
        from pulumi_iterative import lifecycle

        end = time.monotonic() + timeout
        while True:
            status = lifecycle.read(ref)
            if condition(status):
                return status
            if time.monotonic() > end:
                raise AssertionError(f"timed out; last status {status.to_dict()}\n{self.report()}")
            time.sleep(0.3)

    def report(self) -> str:
        lines = [f"simulator errors: {self.errors[-5:]}"]
        for m in self.machines.values():
            state = "running" if m.running else f"exit {m.proc.returncode}"
            lines.append(f"--- {m.name} {m.key} ({state}) console:\n{m.console()[-3000:]}")
        return "\n".join(lines)

    def close(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(10)
        for machine in list(self.machines.values()):
            if machine.running:
                self._signal(machine, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    machine.proc.wait(10)
            machine.metadata.close()
