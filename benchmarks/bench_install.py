"""Benchmark 7: what every machine boot installs, before and after the agent-only install.

Before, the bootstrap pip-installed the whole distribution with its cloud extra
(`pulumi-iterative[aws]`: Pulumi, gRPC, protobuf, ...). Now it installs the wheel with
`--no-deps` plus only what the agent imports on that cloud (`machine_requirements`).
Both go into a fresh venv from the same warm pip cache, alternating, so the network is
out of the timing as far as pip allows; the size is the venv's on disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pulumi_iterative import agent_wheel, clouds

from .common import Row, Scratch, log, median, timed

PIP = ("-m", "pip", "install", "-q", "--disable-pip-version-check")


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _install(python: Path, *commands: tuple[str, ...]) -> None:
    for args in commands:
        subprocess.run([str(python), *PIP, *args], check=True, stdout=subprocess.DEVNULL)


def run(scratch: Scratch, quick: bool) -> list[Row]:
    wheel = scratch.fresh("wheel") / agent_wheel.wheel_name()
    wheel.write_bytes(agent_wheel.build_wheel())
    sides = {
        "ours": ((("--no-deps", str(wheel)), clouds.machine_requirements("aws"))),
        "baseline": ((f"{wheel}[aws]",),),
    }
    log("machine install: warming pip's cache with both sets")
    for name, commands in sides.items():
        _install(_venv(scratch.fresh(f"warm-{name}")), *commands)
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    sizes: dict[str, float] = {}
    for i in range(1 if quick else 3):
        for name in (("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")):
            folder = scratch.fresh(f"venv-{name}-{i}")
            python = _venv(folder)
            seconds, _ = timed(lambda p=python, c=sides[name]: _install(p, *c))
            times[name].append(seconds)
            sizes[name] = _size_mb(folder)
            log(f"machine install ({name}): {seconds:.1f} s, {sizes[name]:.0f} MB")
    probe = "import pulumi_iterative.agent.runner, pulumi_iterative.clouds.aws.machine, sys; "
    probe += "sys.exit('pulumi' in sys.modules)"
    agent_only = subprocess.run([str(python_of(scratch, "ours")), "-c", probe], check=False)
    no_pulumi = subprocess.run(
        [str(python_of(scratch, "ours")), "-c", "import pulumi"], capture_output=True, check=False
    )
    note = "the agent imports in the agent-only venv, and `import pulumi` fails there"
    if agent_only.returncode != 0 or no_pulumi.returncode == 0:
        note = "CHECK FAILED: the agent-only venv is not agent-only"
    return [
        Row(
            "7. machine install",
            "agent for aws into a fresh venv (warm pip cache)",
            median(times["ours"]),
            median(times["baseline"]),
            goal="< 1.0x",
            met=median(times["ours"]) < median(times["baseline"]),
            note=note,
            runs=len(times["ours"]),
            samples=times,
        ),
        Row(
            "7. machine install",
            "size of that venv",
            sizes["ours"],
            sizes["baseline"],
            unit="MB",
            goal="< 1.0x",
            met=sizes["ours"] < sizes["baseline"],
        ),
    ]


def python_of(scratch: Scratch, name: str) -> Path:
    return scratch.path(f"venv-{name}-0") / "bin" / "python"
