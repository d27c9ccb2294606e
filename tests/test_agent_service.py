"""The agent as its own systemd unit on a real machine (issue 9, point 8).

Simulators cannot run systemd, so the rendered unit is a golden file, and the
bootstrap is checked to install it only where the backend asks for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pulumi_iterative import agent_wheel
from pulumi_iterative.agent.bootstrap import (
    STOP_TIMEOUT,
    Install,
    encode_config,
    render_bootstrap,
    render_unit,
)
from pulumi_iterative.clouds import get_backend
from pulumi_iterative.records import BootConfig
from pulumi_iterative.task import TaskRef

GOLDEN = Path(__file__).parent / "golden" / "agent.service"


def test_unit_matches_golden() -> None:
    text = render_unit("train-abcdefgh12") + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_unit_stops_the_agent_with_time_for_a_last_checkpoint() -> None:
    lines = render_unit("t").splitlines()
    assert "After=network-online.target" in lines  # stopped before the network goes
    assert "KillMode=mixed" in lines  # SIGTERM to the supervisor first, not to everyone
    assert f"TimeoutStopSec={STOP_TIMEOUT}" in lines and STOP_TIMEOUT >= 120
    assert "Restart=no" in lines  # a dead agent ends the machine, it is not restarted


def test_only_a_backend_that_asks_gets_the_service() -> None:
    config = BootConfig.from_dict(
        {"task_id": "t-1", "cloud": "aws", "version": "0.1.0", "remote": {"root": "r", "env": {}}}
    )
    with_service = render_bootstrap(config, Install(python="/usr/bin/python3", service=True))
    without = render_bootstrap(config, Install(python="/usr/bin/python3"))
    assert "  if true && [ -z" in with_service and "  if false && [ -z" in without
    assert "pulumi-iterative-agent.service" in with_service


# --- every cloud whose machines run systemd: the backend asks, and the unit works -------


def _ref(cloud: str) -> TaskRef:
    """The fixed task of each cloud's golden bootstrap test."""
    from tests.aws.test_agent_install import _fixed_ref as aws_ref
    from tests.azure.test_agent_install import _fixed_ref as azure_ref
    from tests.gcp.test_agent_install import _fixed_ref as gcp_ref

    return {"aws": aws_ref, "gcp": gcp_ref, "azure": azure_ref}[cloud]()


def _install(cloud: str) -> Install:
    return get_backend(cloud).install(_ref(cloud))


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_vm_clouds_run_the_agent_as_a_unit(cloud: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """EC2, GCE and Azure VMs boot with systemd: each backend asks for the unit, and its
    stored bootstrap (golden in its cloud's tests) carries the very unit checked above."""
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    ref = _ref(cloud)
    install = _install(cloud)
    assert install.service
    text = render_bootstrap(BootConfig(ref.task_id, cloud, ref.remote, "0.1.0"), install)
    assert "  if true && [ -z" in text
    assert f"<<UNIT\n{render_unit(ref.task_id)}\nUNIT\n" in text


# A stand-in agent: records how it was started; waits for SIGTERM when $AGENT_WAITS
# (and ends its sleep then: a sleep left behind would keep the boot log's tee alive).
AGENT = """\
#!/bin/sh
[ "$1" = -c ] && exit 0
printf '%s\\n' "$@" >"$OUT/agent-args.tmp" && mv "$OUT/agent-args.tmp" "$OUT/agent-args"
trap 'echo TERM >"$OUT/agent-term"; kill $WAITING 2>/dev/null; exit 143' TERM
if [ -n "${AGENT_WAITS:-}" ]; then sleep 600 & WAITING=$!; wait $WAITING; fi
exit 0
"""
# A stand-in systemctl: notes what it was asked (the test plays systemd's part).
SYSTEMCTL = """\
#!/bin/sh
echo "$*" >>"$OUT/systemctl"
"""


@dataclass
class FakeSystemd:
    """A machine with systemd, in a folder: the bootstrap's system paths moved under it."""

    root: Path

    def __post_init__(self) -> None:
        for folder in ("bin", "run/systemd/system", "etc/systemd/system", "out", "tmp"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for name, body in (("python", AGENT), ("systemctl", SYSTEMCTL)):
            (self.root / "bin" / name).write_text(body)
            (self.root / "bin" / name).chmod(0o755)

    def moved(self, text: str) -> str:
        for path in ("/run/systemd/system", "/etc/systemd/system", "/var/lib/pulumi-iterative"):
            text = text.replace(path, f"{self.root}{path}")
        return text

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.root}/bin:/usr/bin:/bin",
            "TMPDIR": str(self.root / "tmp"),
            "OUT": str(self.root / "out"),
            **extra,
        }

    def unit(self) -> tuple[dict[str, str], list[str]]:
        """The installed unit's environment and command, as systemd would read them."""
        text = (self.root / "etc/systemd/system/pulumi-iterative-agent.service").read_text()
        env: dict[str, str] = {}
        command: list[str] = []
        for line in text.splitlines():
            if line.startswith("Environment="):
                name, _, value = line.removeprefix("Environment=").partition("=")
                env[name] = value
            elif line.startswith("ExecStart="):
                command = line.removeprefix("ExecStart=").split()
        return env, command


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
@pytest.mark.parametrize("stopped", [False, True], ids=["done", "stopped"])
def test_the_stored_bootstrap_hands_the_agent_to_its_unit(
    cloud: str, stopped: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cloud's bootstrap (its ending and service switch; the install preinstalled) on
    a machine with systemd: the boot writes the unit and starts it without waiting, then
    ends; the unit's command (run here as systemd would, with its environment) supervises
    the agent with the boot's config and folder. A stop (SIGTERM to the main process:
    KillMode=mixed) reaches the agent, for its last checkpoint, and is not a failure."""
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    machine = FakeSystemd(tmp_path / "machine")
    ref = _ref(cloud)
    install = replace(_install(cloud), python=str(machine.root / "bin" / "python"))
    config = BootConfig(ref.task_id, cloud, ref.remote, "0.1.0")
    script = machine.root / "bootstrap.sh"
    script.write_text(machine.moved(render_bootstrap(config, install)))
    boot = subprocess.run(
        ["/bin/sh", str(script)], env=machine.env(), capture_output=True, text=True, timeout=60
    )
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert "the agent runs as pulumi-iterative-agent.service" in boot.stdout
    out = machine.root / "out"
    assert (out / "systemctl").read_text().splitlines() == [
        "daemon-reload",
        "start --no-block pulumi-iterative-agent.service",
    ]
    assert not (out / "agent-args").exists()  # the boot only installed the unit
    env, command = machine.unit()
    assert command == [
        "/bin/sh",
        f"{machine.root}/var/lib/pulumi-iterative/bootstrap.sh",
        "supervise",
    ]
    boot_dir = Path(env["BOOT_DIR"])
    assert boot_dir.is_dir() and env["BOOT_NAME"].startswith("boot-")
    assert env["AGENT_PYTHON"] == install.python
    unit_env = {**env, "OUT": str(out), **({"AGENT_WAITS": "1"} if stopped else {})}
    service = subprocess.Popen(
        command, env=unit_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(out / "agent-args", "the agent to start under its unit")
        if stopped:
            service.send_signal(signal.SIGTERM)  # systemctl stop, or the machine shutting down
        code = service.wait(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    args = (out / "agent-args").read_text().splitlines()
    assert args == [
        "-m",
        "pulumi_iterative.agent",
        "--config",
        encode_config(config),
        "--boot-dir",
        str(boot_dir),
    ]
    if stopped:
        assert (out / "agent-term").read_text().strip() == "TERM"
        assert code == 143  # the machine goes away; nothing reported as failed
    else:
        assert code == 0 and not (out / "agent-term").exists()
    assert "ending the machine" not in (boot_dir / "boot.log").read_text()
