"""The machine simulator: each VM the fake scale set creates becomes a local process
running the very custom data the backend stored in the scale set's model.

When the fake Resource Manager creates a VM, the simulator decodes the custom data
from the scale set's stored model (ARM never returns it on a GET, as in Azure),
writes it to the VM's folder and runs it with /bin/sh, as cloud-init would. The
process gets what an Azure VM has, plus pointers at the emulators:

- PULUMI_ITERATIVE_IMDS_ENDPOINT (and IDENTITY_ENDPOINT/IDENTITY_HEADER, where
  rclone's Go SDK and azure-identity look for a managed identity): a FakeImds of
  its own, serving the VM's compute metadata, its *managed identity's* tokens
  (never the caller's: the process has no AZURE_* variable and no `az` on its
  PATH) and its scheduled events;
- SSL_CERT_FILE/REQUESTS_CA_BUNDLE: trust in azurite's self-signed certificate;
- PULUMI_ITERATIVE_ARM_ENDPOINT: the fake Resource Manager (loopback only);
- HOME: the VM's own folder;
- PULUMI_ITERATIVE_AGENT_PYTHON: the bootstrap's documented skip switch;
- PATH starting with a folder whose `shutdown` and `poweroff` only note, in the VM's
  `powered-off` file, that it powered itself off (a stopped Azure VM stays billed:
  `powered_off` tells a test it happened).

A VM that the fake deletes (scale-in, leaving, eviction, group deletion) gets
SIGTERM, then SIGKILL after a grace. A thread plays autoscale: it applies the
fixed-date profiles (the deadline backstop) as their time comes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests import failed_boots
from tests.azure.azurite import jwt
from tests.azure.fake_arm import SUBSCRIPTION, FakeArm, Vm
from tests.azure.fake_imds import FakeImds

SHUTDOWN_GRACE = 20.0
TICK = 0.5


@dataclass
class SimVm:
    vm: Vm
    folder: Path
    proc: subprocess.Popen[bytes]
    imds: FakeImds
    env: dict[str, str]
    custom_data: str
    deleted_at: float | None = None
    killed: bool = False

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
    def __init__(self, arm: FakeArm, root: Path, *, python: str, path: str) -> None:
        self.arm, self.root, self.python, self.path = arm, root, python, path
        self.root.mkdir(parents=True, exist_ok=True)
        self.bin = failed_boots.power_off_stubs(self.root)
        self.path = os.pathsep.join([str(self.bin), path])
        self.machines: dict[str, SimVm] = {}  # VM name -> process
        self.errors: list[str] = []
        self.issued: list[str] = []  # every token handed to a VM's identity
        self.lock = threading.RLock()
        self.started = False
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        arm.on_vm(self._event)

    def start(self) -> MachineSimulator:
        """Boot every VM the scale set has, and from now on each new one."""
        with self.lock:
            if self.started:
                return self
            self.started = True
            for vm in list(self.arm.vms.values()):
                self._boot(vm)
        self.thread = threading.Thread(target=self._autoscale, daemon=True, name="autoscale")
        self.thread.start()
        return self

    def _event(self, what: str, vm: Vm) -> None:
        try:
            with self.lock:
                if what == "created" and self.started:
                    self._boot(vm)
                elif what in ("deleted", "deallocated") and vm.name in self.machines:
                    machine = self.machines[vm.name]
                    machine.deleted_at = time.time()
                    self._signal(machine, signal.SIGTERM)  # the OS shutting down
                elif what == "preempt" and vm.name in self.machines:
                    self.machines[vm.name].imds.preempt()
        except Exception as exc:  # keep simulating; tests show these on failure
            self.errors.append(f"{what} {vm.name}: {type(exc).__name__}: {exc}")

    def _autoscale(self) -> None:
        while not self.stopping.wait(TICK):
            try:
                self.arm.tick()
                now = time.time()
                for machine in list(self.machines.values()):
                    if (
                        machine.running
                        and machine.deleted_at
                        and (now > machine.deleted_at + SHUTDOWN_GRACE)
                    ):
                        self._signal(machine, signal.SIGKILL)
            except Exception as exc:
                self.errors.append(f"autoscale: {type(exc).__name__}: {exc}")

    def _identity_tokens(self, vm: Vm) -> dict[str, str]:
        if not vm.identities:
            return {}
        found = self.arm.resources.get(vm.identities[0].lower())
        principal = found["properties"]["principalId"] if found else "unknown-identity"
        tokens = {
            "https://management.azure.com": self.arm.grant(principal),
            "https://storage.azure.com": jwt(principal),
        }
        self.issued += tokens.values()
        return tokens

    def _boot(self, vm: Vm) -> None:
        if vm.name in self.machines:
            return
        scale_set = self.arm.resources.get(vm.scale_set.lower()) or {}
        group = vm.id.split("/resourceGroups/", 1)[1].split("/", 1)[0]
        compute = {
            "name": vm.name,
            "resourceGroupName": group,
            "subscriptionId": SUBSCRIPTION,
            "vmScaleSetName": scale_set.get("name", ""),
            "resourceId": vm.id,
            "location": scale_set.get("location", ""),
            "zone": vm.zone,
            "priority": vm.priority,
            "vmSize": str((scale_set.get("sku") or {}).get("name", "")),
            "osType": "Linux",
        }
        imds = FakeImds(compute, self._identity_tokens(vm))
        folder = self.root / vm.name
        folder.mkdir(parents=True, exist_ok=True)
        custom_data = base64.b64decode(vm.custom_data).decode() if vm.custom_data else ""
        # A simulated VM has no systemd, even on a host that runs it (a CI runner): the
        # agent is supervised inline by the bootstrap, never installed as a unit.
        script = folder / "custom-data"
        script.write_text(custom_data.replace("/run/systemd/system", str(folder / "no-systemd")))
        env = {
            "PATH": self.path,
            "LANG": "C.UTF-8",
            "HOME": str(folder),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "PULUMI_ITERATIVE_IMDS_ENDPOINT": imds.endpoint,
            # the VM identity's tokens for rclone (Go) and azure-identity (see fake_imds)
            "IDENTITY_ENDPOINT": imds.endpoint + "/msi/token",
            "IDENTITY_HEADER": imds.identity_header,
            "PULUMI_ITERATIVE_ARM_ENDPOINT": self.arm.endpoint,
            "PULUMI_ITERATIVE_AGENT_PYTHON": self.python,
        }
        if os.environ.get("PYTHONPATH"):  # the agent under test (a worktree), as installed
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        for trust in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # the emulator's certificate
            if os.environ.get(trust):
                env[trust] = os.environ[trust]
        with open(folder / "console.log", "ab") as console:
            proc = subprocess.Popen(
                ["/bin/sh", str(script)],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.machines[vm.name] = SimVm(vm, folder, proc, imds, env, custom_data)

    # --- what tests do ------------------------------------------------------------------

    def _signal(self, machine: SimVm, sig: int) -> None:
        groups = [machine.proc.pid]
        with contextlib.suppress(FileNotFoundError, ValueError):
            groups.append(int((machine.folder / "pulumi-iterative" / "script.pgid").read_text()))
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

    def kill(self, name: str) -> None:
        """The VM's processes vanish at once: no notice, no last checkpoint."""
        machine = self.machines[name]
        machine.killed = True
        self._signal(machine, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            machine.proc.wait(10)

    def report(self) -> str:
        lines = [f"simulator errors: {self.errors[-5:]}"]
        for name, m in self.machines.items():
            state = "running" if m.running else f"exit {m.proc.returncode}"
            lines.append(f"--- {name} ({state}) console:\n{m.console()[-3000:]}")
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
            machine.imds.close()


def running(sim: MachineSimulator) -> list[str]:
    return [name for name, m in sim.machines.items() if m.running]
