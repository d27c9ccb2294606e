"""Two teammates' workstations for team-stack tests: each has its own checkout of the
same project, at a different path, and its own home directory (the second one unusable,
like a CI runner's: every write under it fails, even as root).

Each provider server is started as the engine starts it for that person: in their
checkout, with their HOME and their shell's variables, and with none of this package's
state-folder settings, so nothing can lean on the test's PULUMI_ITERATIVE_HOME.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pulumi_iterative.provider import TaskProvider
from tests.provider_server import ProviderServer, provider_server

TYPE = "pulumi-python:dynamic/iterative:Task"
PROGRAM_FILES = {"train.py": "print('training')\n", "data/input.txt": "x\n"}


@dataclass(frozen=True)
class Workstation:
    name: str
    checkout: Path  # the project folder: the engine starts the provider here
    home: Path
    shell: dict[str, str]  # the person's own variables

    def env(self) -> dict[str, str]:
        # "" is unset for this package (see paths.home); HOME is the person's own.
        return {
            "HOME": str(self.home),
            "PULUMI_ITERATIVE_HOME": "",
            "XDG_STATE_HOME": "",
            **self.shell,
        }

    @contextmanager
    def server(self) -> Iterator[ProviderServer]:
        with provider_server(
            TaskProvider(),
            env=self.env(),
            cwd=self.checkout,
            resource_type=TYPE,
            parent_type="iterative:index:IterativeTask",
        ) as srv:
            srv.configure({})
            yield srv


def checkout(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, text in PROGRAM_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def two_workstations(tmp_path: Path) -> tuple[Workstation, Workstation]:
    """Alice with a normal home; Bob (or CI) at a deeper path, with a home that cannot
    be written (a path below a regular file)."""
    alice_home = tmp_path / "alice" / "home"
    alice_home.mkdir(parents=True)
    blocker = tmp_path / "ci" / "not-a-folder"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")
    alice = Workstation(
        "alice",
        checkout(tmp_path / "alice" / "src" / "proj"),
        alice_home,
        {"GREETING": "from alice", "TEAM_A": "1"},
    )
    bob = Workstation(
        "bob",
        checkout(tmp_path / "ci" / "runner" / "work" / "proj"),
        blocker / "home",
        {"GREETING": "from bob"},
    )
    return alice, bob
