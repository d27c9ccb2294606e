"""The local cloud in the conformance suite: machines are the group's own processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import registry
from pulumi_iterative.clouds.local import backend as local_backend
from pulumi_iterative.clouds.local.backend import Place, _alive
from pulumi_iterative.clouds.local.group import BACKSTOP_GRACE
from pulumi_iterative.clouds.local.machine import PREEMPTING
from pulumi_iterative.spec import TaskSpec, parse_spec
from pulumi_iterative.task import TaskRef
from tests.conformance.harness import SHUTDOWN_SKEW

NOTICE = 10.0  # seconds between the notice's SIGTERM and the kill


class LocalHarness:
    name = "local"
    script_tries = 1  # the machine leaves its group whatever the script did
    steps = (
        "Create bucket folder",
        "Upload workdir",
        "Store task definition",
        "Start machine group",
    )
    xfail: dict[str, str] = {}

    def __init__(self, home: Path, caller_secret: str) -> None:
        self.home = home
        self.caller_secrets = (caller_secret,)

    def spec(self, workdir: Path, script: str, **args: Any) -> TaskSpec:
        storage = {"workdir": str(workdir), **args.pop("storage", {})}
        return parse_spec({"cloud": "local", "script": script, "storage": storage, **args})

    def start(self) -> None:
        return None  # the group process starts machines itself

    def _records(self, ref: TaskRef) -> list[dict[str, Any]]:
        try:
            return json.loads((Path(Place.from_ref(ref).group) / "machines.json").read_text())
        except (FileNotFoundError, ValueError):
            return []

    def preempt(self, ref: TaskRef, index: int) -> str:
        (m,) = [r for r in self._records(ref) if r["index"] == index and r["state"] == "running"]
        pgids = [m["pid"]]
        with contextlib.suppress(FileNotFoundError, ValueError):
            pgids.append(int((Path(m["dir"]) / "script.pgid").read_text()))
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pgid), signal.SIGKILL)
        return str(m["id"])

    def take_away(self, ref: TaskRef, index: int) -> str:
        """What the group's rehearsal does (group.py `preempt`): the notice file, SIGTERM
        (the script's session first, see SHUTDOWN_SKEW), and a kill NOTICE seconds later;
        the group then replaces the machine."""
        (m,) = [r for r in self._records(ref) if r["index"] == index and r["state"] == "running"]
        (Path(m["dir"]) / PREEMPTING).write_text(str(time.time()))
        pgids = [int((Path(m["dir"]) / "script.pgid").read_text()), int(m["pid"])]

        def signal_all(sig: int) -> None:
            for pgid in pgids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)

        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgids[0], signal.SIGTERM)
        time.sleep(SHUTDOWN_SKEW)
        signal_all(signal.SIGTERM)
        threading.Timer(NOTICE, signal_all, (signal.SIGKILL,)).start()
        return str(m["id"])

    def running_machines(self, ref: TaskRef) -> list[str]:
        return [str(r["id"]) for r in self._records(ref) if _alive(int(r["pid"]))]

    def backstop(self, ref: TaskRef) -> float | None:
        config = json.loads((Path(Place.from_ref(ref).group) / "group.json").read_text())
        return float(config["deadline"]) + BACKSTOP_GRACE

    def leftovers(self, task_id: str) -> list[str]:
        found = [f"bucket {p}" for p in (self.home / "buckets").glob(f"{task_id}*")]
        found += [f"group {p}" for p in (self.home / "groups").glob(f"{task_id}*")]
        found += [f"registry {r.task_id}" for r in registry.all_refs() if r.task_id == task_id]
        return found

    def stored(self, ref: TaskRef) -> str:
        folder = Path(Place.from_ref(ref).group)
        return "\n".join(
            p.read_text(errors="replace")
            for name in ("group.json", "bootstrap.sh", "machines.json")
            if (p := folder / name).exists()
        )

    def break_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        install = local_backend.Backend.install
        monkeypatch.setattr(
            local_backend.Backend,
            "install",
            lambda self, ref: replace(install(self, ref), python="/nonexistent/python3"),
        )

    def report(self) -> str:
        consoles = sorted((self.home / "groups").glob("*/machines/*/console.log"))
        return "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-2000:]}" for p in consoles)


@pytest.fixture
def local_harness(iterative_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHarness]:
    secret = "caller-secret-" + secrets.token_urlsafe(16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # on the workstation, never stored
    yield LocalHarness(iterative_home, secret)
