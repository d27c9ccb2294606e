"""What the no-idle-machine tests of every cloud stub on a simulated machine: the OS's
commands on the bootstrap's real install path, and an agent the OOM killer takes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import agent_wheel


def stub(folder: Path, name: str, body: str) -> Path:
    """An executable shell script `folder/name`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def power_off_stubs(root: Path) -> Path:
    """`root/bin` with `shutdown` and `poweroff` that only note a machine powered itself
    off (in its $HOME/powered-off): the tests may run as root, the host must stay up."""
    folder = root / "bin"
    for command in ("shutdown", "poweroff"):
        stub(folder, command, 'echo "$0 $*" >>"$HOME/powered-off"\n')
    return folder


def real_install(simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bootstrap's real install path (no skip switch) on `simulator`'s machines,
    with /opt moved into tmp and the OS's commands stubbed in a folder first on PATH;
    returns that folder."""
    monkeypatch.setattr(agent_wheel, "released", lambda: False)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    simulator.python = ""
    simulator.moved = {"/opt/": f"{tmp_path}/opt/"}
    simulator.path_prefix.insert(0, str(stubs))
    return stubs


def break_install(stubs: Path, simulator: Any, path: str, *, preinstalled: str = "") -> None:
    """Make the install fail at `path`: "apt" (no Python, apt-get fails), "pip" (a broken
    index), or "fetch" (pip works; the caller loses the wheel). `preinstalled`: a shell
    `case` pattern of pip arguments that succeed anyway (what the image already has)."""
    if path == "apt":
        stub(stubs, "python3", "exit 1\n")
        stub(stubs, "apt-get", 'echo "E: Unable to fetch some archives"; exit 100\n')
        return
    # A python3 whose venv holds a real interpreter and a pip that installs nothing;
    # $PIP_LINE says how pip ends.
    ok = f'case "$*" in {preinstalled}) exit 0;; esac\\n' if preinstalled else ""
    stub(
        stubs,
        "python3",
        f"""\
if [ "$1" = -c ]; then exit 0; fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  ln -sf {sys.executable} "$3/bin/python"
  printf '#!/bin/sh\\n{ok}%s\\n' "$PIP_LINE" >"$3/bin/pip"
  chmod +x "$3/bin/pip"
  exit 0
fi
exit 1
""",
    )
    fails = "echo 'ERROR: No matching distribution found'; exit 1"
    simulator.extra_env["PIP_LINE"] = fails if path == "pip" else "exit 0"


def oom_killed_agent(folder: Path) -> Path:
    """A `python` that runs the agent and kills it (-9) once it has left its crash
    report, as the OOM killer would; anything else it runs as the real interpreter."""
    return stub(
        folder,
        "python",
        f"""\
case "$*" in
  *pulumi_iterative.agent*--boot-dir*)
    boot_dir="$(echo "$*" | sed 's/.*--boot-dir //')"
    {sys.executable} "$@" &
    agent=$!
    while [ ! -s "$boot_dir/crash-report.path" ]; do sleep 0.1; done
    kill -9 "$agent"
    wait "$agent"
    ;;
  *) exec {sys.executable} "$@" ;;
esac
""",
    )
