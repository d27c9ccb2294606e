"""The machine simulator: each EC2 instance moto launched becomes a local process
running the very user-data the backend stored.

For every pending or running instance of a group, the user-data is read back from
the launch template version the instance was launched from (its
`aws:ec2launchtemplate:*` tags), base64-decoded, written to the machine's folder
and run with /bin/sh, as cloud-init would. The process gets what an EC2 machine
has, plus pointers at the emulators:

- AWS_ENDPOINT_URL: moto (boto3 honours it; rclone gets it from the task's remote);
- AWS_EC2_METADATA_SERVICE_ENDPOINT: a FakeImds of its own, serving its instance
  id and the *instance role's* credentials (never the caller's: the process has
  no AWS_ACCESS_KEY_ID, so boto3 and rclone find credentials through IMDSv2,
  as on EC2);
- HOME: the machine's own folder (the agent's home is under it);
- PULUMI_ITERATIVE_AGENT_PYTHON: the bootstrap's documented skip switch, so the
  agent is this interpreter instead of an OS-level install (and runs under the
  bootstrap's own supervisor, not a systemd unit);
- PATH starting with a folder whose `shutdown` and `poweroff` only note that the
  machine powered itself off: EC2 then does what the launch template's
  InstanceInitiatedShutdownBehavior says (terminate, or stop).

A watcher thread plays EC2: it boots instances as the group launches them, and
shuts down (SIGTERM, then SIGKILL after a grace) the process of any instance
moto shows as shutting down or terminated. `kill` is a hard preemption.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import failed_boots
from tests.aws.fake_imds import FakeImds

SHUTDOWN_GRACE = 20.0
TICK = 0.25


@dataclass
class SimMachine:
    instance_id: str
    folder: Path
    proc: subprocess.Popen[bytes]
    imds: FakeImds
    env: dict[str, str]
    user_data: str
    shutdown_at: float | None = None
    killed: bool = False
    shutdown_behavior: str = "stop"  # the launch template's InstanceInitiatedShutdownBehavior
    powered_off_handled: bool = False
    role_credentials: tuple[str, str, str] = field(default=("", "", ""))

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
    def __init__(self, endpoint: str, region: str, root: Path, *, python: str) -> None:
        self.endpoint, self.region, self.root, self.python = endpoint, region, root, python
        self.root.mkdir(parents=True, exist_ok=True)
        self.bin = failed_boots.power_off_stubs(self.root)
        self.path_prefix: list[str] = [str(self.bin)]  # tests may put more stubs first
        self.extra_env: dict[str, str] = {}
        # Folders moved for a test that runs the real install path (as root, /opt is the
        # host's): {"/opt/": "<tmp>/opt/"}; nothing else of the stored text changes.
        self.moved: dict[str, str] = {}
        self.machines: dict[str, SimMachine] = {}
        # With moto enforcing IAM: keys that see everything (EC2 itself), and machines
        # get credentials of their real instance role (sts:AssumeRole), so moto checks
        # every machine request against the role's policies.
        self.admin: tuple[str, str] | None = None
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # --- the cloud's side ---------------------------------------------------------------

    def _client(self, service: str) -> Any:
        import boto3

        keys = {}
        if self.admin is not None:  # EC2's own view, when moto enforces IAM
            keys = {"aws_access_key_id": self.admin[0], "aws_secret_access_key": self.admin[1]}
        return boto3.client(service, region_name=self.region, **keys)

    def start(self) -> MachineSimulator:
        """Watch moto in the background: boot what launches, shut down what terminates."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._watch, daemon=True, name="ec2-sim")
            self.thread.start()
        return self

    def _watch(self) -> None:
        ec2 = self._client("ec2")
        iam = self._client("iam")
        while not self.stopping.is_set():
            try:
                self.tick(ec2, iam)
            except Exception as exc:  # keep simulating; tests show these on failure
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stopping.wait(TICK)

    def tick(self, ec2: Any, iam: Any) -> None:
        reservations = ec2.describe_instances(
            Filters=[{"Name": "tag-key", "Values": ["aws:autoscaling:groupName"]}]
        )["Reservations"]
        now = time.time()
        for instance in (i for r in reservations for i in r["Instances"]):
            iid, state = instance["InstanceId"], instance["State"]["Name"]
            with self.lock:
                machine = self.machines.get(iid)
            if machine is None and state in ("pending", "running"):
                self.boot(ec2, iam, instance)
            elif (
                machine is not None
                and not machine.running
                and machine.powered_off
                and not machine.powered_off_handled
                and state in ("pending", "running")
            ):
                machine.powered_off_handled = True  # the OS halted: EC2 acts on it
                if machine.shutdown_behavior == "terminate":
                    ec2.terminate_instances(InstanceIds=[iid])
                else:
                    ec2.stop_instances(InstanceIds=[iid])
            elif machine is not None and state in ("shutting-down", "terminated"):
                if machine.running and machine.shutdown_at is None:
                    machine.shutdown_at = now
                    self._signal(machine, signal.SIGTERM)  # the OS shutting down
                elif machine.running and now > (machine.shutdown_at or now) + SHUTDOWN_GRACE:
                    self._signal(machine, signal.SIGKILL)

    def boot(self, ec2: Any, iam: Any, instance: dict[str, Any]) -> SimMachine:
        iid = instance["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        version = ec2.describe_launch_template_versions(
            LaunchTemplateId=tags["aws:ec2launchtemplate:id"],
            Versions=[tags["aws:ec2launchtemplate:version"]],
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        user_data = base64.b64decode(version["UserData"]).decode()
        for old, new in self.moved.items():
            user_data = user_data.replace(old, new)
        profile = version.get("IamInstanceProfile") or {}
        profile_name = profile.get("Name") or profile.get("Arn", "").rsplit("/", 1)[-1]
        roles = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"][
            "Roles"
        ]
        role = roles[0]["RoleName"] if roles else "none"
        creds = (
            "ASIAROLE" + secrets.token_hex(6).upper(),
            "role-secret-" + secrets.token_urlsafe(16),
            "role-session-" + secrets.token_urlsafe(16),
        )
        if self.admin is not None and roles:
            # What EC2 does for an instance profile, straight in moto's store: its
            # AssumeRole API cannot evaluate a Service principal's trust policy.
            from moto.sts.models import sts_backends

            account = roles[0]["Arn"].split(":")[4]
            session = sts_backends[account]["aws"].assume_role(
                self.region, iid, roles[0]["Arn"], "", 3600, ""
            )
            creds = (session.access_key_id, session.secret_access_key, session.session_token)
        imds = FakeImds(
            iid,
            self.region,
            instance["Placement"]["AvailabilityZone"],
            role,
            creds,
            instance_type=instance["InstanceType"],
            launched=instance["LaunchTime"],  # EC2's own, as the identity document says
        )
        folder = self.root / iid
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "user-data"
        script.write_text(user_data)
        env = {
            "PATH": ":".join([*self.path_prefix, os.environ.get("PATH", "/usr/bin:/bin")]),
            "LANG": "C.UTF-8",
            "HOME": str(folder),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "PULUMI_ITERATIVE_AGENT_PYTHON": self.python,
            **self.extra_env,
        }
        if os.environ.get("PYTHONPATH"):  # the agent is the package under test (a worktree)
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        if not self.python:
            del env["PULUMI_ITERATIVE_AGENT_PYTHON"]  # the real install path
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
        machine = SimMachine(
            iid,
            folder,
            proc,
            imds,
            env,
            user_data,
            role_credentials=creds,
            shutdown_behavior=version.get("InstanceInitiatedShutdownBehavior", "stop"),
        )
        with self.lock:
            self.machines[iid] = machine
        return machine

    # --- what tests do ------------------------------------------------------------------

    def _signal(self, machine: SimMachine, sig: int) -> None:
        groups = [machine.proc.pid]
        with contextlib.suppress(FileNotFoundError, ValueError):
            groups.append(int((machine.folder / "pulumi-iterative" / "script.pgid").read_text()))
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

    def kill(self, instance_id: str) -> None:
        """A hard preemption: the machine vanishes, no notice, no last checkpoint."""
        machine = self.machines[instance_id]
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

    def wait_status(self, ref: Any, condition: Any, timeout: float = 90.0) -> Any:
        """Poll the task's status (lifecycle.read) until condition holds; fail with the
        last status and every machine's console."""
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
            lines.append(f"--- {m.instance_id} ({state}) console:\n{m.console()[-3000:]}")
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
