"""5. Preview: Check + Diff of 100 tasks through the real provider server.

The server is `python -m pulumi.dynamic` (the one shipped in the pulumi wheel),
driven over gRPC by tests/provider_server.py, the engine-shaped harness the
provider's own tests use. A preview of a stack of 100 tasks: Check each one's
inputs (as the engine does for every resource), then Diff each against state
(old outputs: the checked inputs plus computed outputs), half of them with a
changed script. Timed from the first Check to the last Diff, one call at a
time (the engine would overlap them: this is the slow case); the server's own
start (about a second of imports, paid once per `pulumi preview`) is reported
in the note.

Cloud calls must be 0: the server runs with benchmarks/audit/sitecustomize.py,
which logs every process start (rclone, ...) and outbound socket connection the
server's Python makes, and with PULUMI_ITERATIVE_HOME in an empty folder that
must stay empty (no bucket, no group, no registry entry).
"""

from __future__ import annotations

from pathlib import Path

from .common import HERE, Row, Scratch, log, median, timed

TASKS = 100


def inputs(i: int, workdir: Path, script: str = "python train.py") -> dict:
    return {
        "cloud": "local",
        "name": f"task-{i:03d}",
        "machine": "m",
        "spot": 0 if i % 2 else -1,
        "parallelism": 1 + i % 4,
        "timeout": "2h",
        "environment": {"SEED": str(i), "EPOCHS": "10"},
        "script": f"#!/bin/bash\npip install -r requirements.txt\n{script} --seed {i}\n",
        "storage": {"workdir": str(workdir), "output": "results", "exclude": [".venv/", "*.tmp"]},
    }


def run(scratch: Scratch, quick: bool) -> list[Row]:
    try:
        from pulumi_iterative.provider import TaskProvider
        from tests.provider_server import ProviderServer
    except ImportError as exc:  # the harness lives in tests/; run from the repository root
        return [Row("5. preview", f"check + diff, {TASKS} tasks", None, note=f"skipped: {exc}")]

    workdir = scratch.fresh("wd-preview")
    (workdir / "train.py").write_text("print('train')\n")
    home = scratch.fresh("preview-home")
    audit = scratch.path("audit") / "events.log"
    audit.write_text("")
    reps = 3 if quick else 5
    totals: list[float] = []
    calls: list[int] = []
    starts: list[float] = []
    for _ in range(reps):
        server = ProviderServer(
            TaskProvider(),
            env={
                "PYTHONPATH": str(HERE / "audit"),
                "BENCH_AUDIT_LOG": str(audit),
                "PULUMI_ITERATIVE_HOME": str(home),
            },
            cwd=str(workdir),
        )
        started, _ = timed(server.start)
        try:
            server.configure({})
            before = len(audit.read_text().splitlines())

            def preview(server: ProviderServer = server) -> None:
                checked = []
                for i in range(TASKS):
                    news, failures = server.check(f"task-{i:03d}", {}, inputs(i, workdir))
                    assert not failures, failures
                    checked.append(news)
                for i, old in enumerate(checked):
                    state = {
                        **old,
                        "task_id": f"task-{i:03d}-abcdefgh12",
                        "ref": {"task_id": f"task-{i:03d}-abcdefgh12", "cloud": "local"},
                        "status": {"state": "running"},
                        "events": [],
                        "logs": [],
                        "addresses": [],
                    }
                    script = "python train2.py" if i % 2 else "python train.py"
                    news, _ = server.check(f"task-{i:03d}", old, inputs(i, workdir, script))
                    diff = server.diff(f"task-{i:03d}-abcdefgh12", f"task-{i:03d}", state, news)
                    assert diff.changes == bool(i % 2), (i, diff)

            seconds, _ = timed(preview)
            events = audit.read_text().splitlines()[before:]
        finally:
            server.stop()
        totals.append(seconds)
        calls.append(len(events))
        starts.append(started)
        if events:
            log(f"preview: cloud calls seen: {events[:5]}")
    touched = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    calls_total = max(calls) + len(touched)
    row = Row(
        "5. preview",
        f"check + diff, {TASKS} tasks, python -m pulumi.dynamic over gRPC",
        median(totals),
        ours_req=calls_total,
        req_unit="cloud calls",
        goal="< 1 s, 0 cloud calls",
        runs=reps,
        samples={"ours": totals},
    )
    row.met = row.ours is not None and row.ours < 1.0 and calls_total == 0
    row.note = (
        f"{TASKS} Check + {TASKS} (Check + Diff) calls; server start {median(starts):.2f} s "
        f"(not counted); home touched: {len(touched)} files"
    )
    log(f"preview: {median(totals):.3f} s, cloud calls {calls_total}")
    return [row]
