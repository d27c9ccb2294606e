"""The command line, run as a user runs it: the installed `pulumi-iterative` command."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pulumi_iterative.task import check_task_id

CLI = [sys.executable, "-m", "pulumi_iterative.cli"]


def cli(*args: str, home: Path, cwd: Path | None = None, timeout: float = 120):
    env = {**os.environ, "PULUMI_ITERATIVE_HOME": str(home)}
    return subprocess.run(
        [*CLI, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_follows_logs_brings_outputs_and_exits_with_the_task_code(
    iterative_home: Path, workdir: Path
) -> None:
    (workdir / "task.yaml").write_text(
        "cloud: local\n"
        "script: |\n  #!/bin/sh\n  mkdir -p results\n  echo hi from $TASK_INDEX\n"
        "  echo 42 > results/answer.txt\n  exit 3\n"
        "storage: {workdir: ., output: results, exclude: ['*.yaml']}\n"
    )
    done = cli("run", "task.yaml", home=iterative_home, cwd=workdir)
    assert done.returncode == 3, done.stderr
    assert "hi from 0" in done.stdout
    assert "failed" in done.stdout
    # besides logs, run says what happens: the machine's launch, the state's changes
    assert " launch: launched machine " in done.stdout
    assert "\n[task] failed (1 failed)\n" in done.stdout
    assert (workdir / "results" / "answer.txt").read_text().strip() == "42"
    assert "Traceback" not in done.stderr
    assert cli("list", home=iterative_home).stdout == ""  # run cleans up after itself


def test_lifecycle_commands(iterative_home: Path, workdir: Path) -> None:
    created = cli(
        "create",
        "--cloud",
        "local",
        "--workdir",
        str(workdir),
        "--output",
        "out",
        "--script",
        "mkdir -p out; echo done > out/x; echo logged",
        home=iterative_home,
    )
    assert created.returncode == 0, created.stderr
    task_id = created.stdout.strip().splitlines()[-1]
    assert "[1/4] Create bucket folder" in created.stderr  # progress lines
    logs = cli("logs", task_id, "--follow", home=iterative_home)
    assert "logged" in logs.stdout
    status = cli("status", task_id, home=iterative_home)
    assert "succeeded" in status.stdout
    assert task_id in cli("list", home=iterative_home).stdout
    pulled = cli("pull", task_id, "--to", str(workdir / "elsewhere"), home=iterative_home)
    assert (workdir / "elsewhere" / "out" / "x").read_text() == "done\n", pulled.stderr
    assert cli("stop", task_id, home=iterative_home).returncode == 0
    deleted = cli("delete", task_id, home=iterative_home)
    assert deleted.returncode == 0 and (workdir / "out" / "x").exists()
    gone = cli("status", task_id, home=iterative_home)
    assert gone.returncode == 2 and "pulumi-iterative list" in gone.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--cloud", "local", "--script", "x", "--spot", "-3"], "error: spot:"),
        (["run", "--cloud", "nowhere", "--script", "x"], "error: cloud: unknown cloud"),
        (["run", "missing.yaml"], "task file missing.yaml not found"),
        (["status", "not-a-task"], "is not a task id"),
        (["create", "--cloud", "local", "--script", "x", "--env", "=1"], "NAME=VALUE"),
    ],
)
def test_errors_are_one_clear_line(iterative_home: Path, tmp_path: Path, args, words) -> None:
    done = cli(*args, home=iterative_home, cwd=tmp_path)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert not (iterative_home / "buckets").exists()  # nothing half-made


def test_bad_task_file_names_every_field(iterative_home: Path, tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text('cloud = "local"\nparallelism = 0\nspot = -5\n')
    done = cli("create", "t.toml", home=iterative_home, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert {line.split(":")[1].strip() for line in lines} == {"parallelism", "spot", "script"}


def test_checkpoint_outside_a_machine_is_harmless(iterative_home: Path) -> None:
    env_free = cli("checkpoint", home=iterative_home)
    assert env_free.returncode == 0 and "not on a task's machine" in env_free.stderr


def test_checkpoint_with_a_dead_agent_is_one_line(iterative_home: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PULUMI_ITERATIVE_HOME": str(iterative_home),
        "TASK_AGENT_SOCKET": str(tmp_path / "gone.sock"),
    }
    done = subprocess.run(
        [*CLI, "checkpoint"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "not answering" in done.stderr
    assert "Traceback" not in done.stderr


def test_create_prints_the_task_id_and_nothing_else(iterative_home: Path, workdir: Path) -> None:
    """`ID=$(pulumi-iterative create ...)` must capture the id alone; every command whose
    stdout a script reads gives only that."""
    (workdir / "data.bin").write_bytes(os.urandom(3000))  # an upload with a transfer meter
    created = cli(
        "create",
        "--cloud",
        "local",
        "--workdir",
        str(workdir),
        "--script",
        "echo hi",
        home=iterative_home,
    )
    assert created.returncode == 0, created.stderr
    task_id = created.stdout.removesuffix("\n")
    assert created.stdout == task_id + "\n"
    assert check_task_id(task_id) == task_id
    assert "%" not in created.stderr  # no transfer meter when nobody watches a terminal
    cli("logs", task_id, "--follow", home=iterative_home)
    status = cli("status", task_id, "--json", home=iterative_home)
    assert json.loads(status.stdout)["state"] == "succeeded"
    listed = cli("list", home=iterative_home).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [task_id]
    cli("delete", task_id, home=iterative_home)


LONG_RUN = """cloud: local
script: |
  #!/bin/sh
  mkdir -p results
  echo partial > results/partial.txt
  echo working
  while true; do sleep 0.2; done
storage: {workdir: ., output: results, checkpoint_interval: 0.5}
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_cancelled_run_stops_brings_outputs_home_and_cleans_up(
    iterative_home: Path, workdir: Path, sig: signal.Signals
) -> None:
    """CI cancels a job with SIGTERM, a closed terminal sends SIGHUP: both like Ctrl-C."""
    (workdir / "task.yaml").write_text(LONG_RUN)
    env = {**os.environ, "PULUMI_ITERATIVE_HOME": str(iterative_home)}
    proc = subprocess.Popen(
        [*CLI, "run", "task.yaml"],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        end = time.monotonic() + 120
        seen = ""
        while "working" not in seen:  # the script runs: logs are being followed
            assert time.monotonic() < end and proc.poll() is None, seen
            with contextlib.suppress(queue.Empty):
                seen += lines.get(timeout=1.0)
        proc.send_signal(sig)
        err = proc.stderr.read()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert (workdir / "results" / "partial.txt").read_text() == "partial\n"
    assert cli("list", home=iterative_home).stdout == ""
    assert not any((iterative_home / "buckets").glob("*"))
    assert not list((iterative_home / "groups").glob("*/group.pid"))


def test_an_unwritable_task_list_never_fails_a_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI's task list is a convenience: when the home cannot be written, remembering
    a task that is already running warns instead of failing the create."""
    from pulumi_iterative import registry
    from pulumi_iterative.task import TaskRef

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PULUMI_ITERATIVE_HOME", str(blocker / "home"))
    ref = TaskRef("t-abcdefgh12", "local", "local", {"root": str(tmp_path)}, 1, 0.0, 1.0)
    assert registry.remember(ref) is False
    assert "not in this workstation's task list" in caplog.text


def test_a_task_file_names_its_task(iterative_home: Path, workdir: Path) -> None:
    (workdir / "Fine_Tune.yaml").write_text("cloud: local\nscript: echo hi\n")
    created = cli("create", "Fine_Tune.yaml", home=iterative_home, cwd=workdir)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("fine-tune-"), created.stdout
    named = cli("create", "Fine_Tune.yaml", "--name", "mine", home=iterative_home, cwd=workdir)
    assert named.stdout.startswith("mine-"), named.stdout
    for task_id in (created.stdout.strip(), named.stdout.strip()):
        cli("delete", task_id, "--no-pull", home=iterative_home)
