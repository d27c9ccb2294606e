"""`pulumi-iterative run` on cloud gcp, as a user runs it, against the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.gcp.conftest import Gcp, leftovers
from tests.gcp.simulator import MachineSimulator


def test_run_end_to_end(
    gcp: Gcp, gcp_simulator: MachineSimulator, iterative_home: Path, workdir: Path
) -> None:
    (workdir / "task.yaml").write_text(
        "cloud: gcp\nregion: us-east\nmachine: s\nspot: 0\n"
        "script: |\n  #!/bin/sh\n  mkdir -p results\n  echo hi from $TASK_INDEX\n"
        "  echo 42 > results/answer.txt\n  exit 3\n"
        "storage: {workdir: ., output: results, exclude: ['*.yaml']}\n"
    )
    gcp_simulator.start()
    env = {**os.environ, "PULUMI_ITERATIVE_HOME": str(iterative_home)}
    done = subprocess.run(
        [sys.executable, "-m", "pulumi_iterative.cli", "run", "task.yaml"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 3, done.stderr + gcp_simulator.report()
    assert "hi from 0" in done.stdout and "failed" in done.stdout
    assert "[1/11] Create bucket" in done.stderr  # progress lines, every step counted
    assert "Traceback" not in done.stderr
    assert (workdir / "results" / "answer.txt").read_text().strip() == "42"
    task_id = next(
        line.split()[1].rstrip(";")
        for line in done.stdout.splitlines()
        if line.startswith("created ")
    )
    assert leftovers(gcp, task_id) == []
