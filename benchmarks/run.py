"""Run every benchmark on this machine; write results.md and results.png; print the table.

    python -m benchmarks            # the full run (a few minutes on 2 cores)
    python -m benchmarks --quick    # smaller workdirs, fewer repetitions
    python -m benchmarks --only 1,2 # some of them

Results go to benchmarks/results/ (not committed); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import (
    bench_checkpoint,
    bench_install,
    bench_logs,
    bench_preview,
    bench_recovery,
    bench_status,
    bench_transfer,
    report,
    workload,
)
from .common import HERE, MB, SHM, Row, Scratch, Target, default_scratch, drop, log, machine_info
from .s3server import MotoS3


@dataclass(frozen=True)
class Plan:
    small: int  # bytes in the 1,000-file workdir
    large: int  # bytes in the 10,000-file workdir
    big_local: int  # the single appended file, local folder
    big_s3: int  # the single appended file, S3 on moto
    transfer_rounds: tuple[int, int, int]  # 1,000 files local, 10,000 local, 1,000 on S3
    checkpoint_rounds: tuple[int, int]  # local, S3
    big_rounds: int
    recovery_intervals: tuple[float, ...]  # seconds between preemptions, one task pair each
    small_files: int  # files of SMALL_SIZE on S3: upload and restore (issue 13, goal 1)
    huge_files: int  # files of 1 KB on a local folder: a one-file checkpoint (goal 2)


SMALL_SIZE = 10 * 1024
CHANGED_GOAL = 0.05  # a one-file checkpoint, against the baseline's turn
QUICK = Plan(
    20 * MB, 100 * MB, 128 * MB, 64 * MB, (3, 2, 1), (5, 3), 3, (13.0, 17.5), 2_000, 30_000
)
FULL = Plan(
    100 * MB,
    1024 * MB,
    1024 * MB,
    128 * MB,
    (3, 2, 2),
    (7, 5),
    5,
    (13.0, 16.5, 19.5),
    10_000,
    100_000,
)


def storage(plan: Plan, scratch: Scratch, s3: MotoS3, which: set[str]) -> list[Row]:
    """Benchmarks 1 and 2: they share workdirs and uploads."""
    rows: list[Row] = []
    local = Target("local folder", str(scratch.path("remote")))
    s3.make_bucket("bench-storage", bench_checkpoint.rclone_binary())
    on_s3 = Target("S3 (moto)", ":s3:bench-storage", s3.env(), s3)
    log(f"making workdirs: 1,000 files / {plan.small // MB} MB, 10,000 / {plan.large // MB} MB")
    t1k = workload.make_tree(scratch.fresh("wd-1k"), 1000, plan.small, seed=1)
    t10k = workload.make_tree(scratch.fresh("wd-10k"), 10_000, plan.large, seed=2)
    small, large = f"1,000 files / {plan.small // MB} MB", f"10,000 files / {plan.large // MB} MB"
    cases = (
        (small, t1k, local, plan.transfer_rounds[0], plan.checkpoint_rounds[0]),
        (large, t10k, local, plan.transfer_rounds[1], plan.checkpoint_rounds[0]),
        (small, t1k, on_s3, plan.transfer_rounds[2], plan.checkpoint_rounds[1]),
    )
    for label, tree, target, rounds, checkpoint_rounds in cases:
        if "2" in which:
            transfer_rows, uploaded = bench_transfer.measure(label, tree, target, rounds, scratch)
            rows += transfer_rows
        else:
            uploaded = bench_checkpoint.upload_both(tree, target, label[:6].strip())
        if "1" in which:
            rows.append(
                bench_checkpoint.measure(
                    f"{label}, 1 changed",
                    tree,
                    target,
                    uploaded,
                    lambda i, t=tree: workload.change_one(t, i),
                    checkpoint_rounds,
                    CHANGED_GOAL,
                    scratch,
                )
            )
        if not target.s3:  # bound the space used: this case's copies are done with
            drop(uploaded.ours.root)
            drop(uploaded.baseline)
        if tree is t10k:
            drop(tree.root)
    if "2" in which:
        n = plan.small_files
        log(f"making a workdir of {n:,} files of {SMALL_SIZE // 1024} KB")
        tree = workload.make_uniform(scratch.fresh("wd-small"), n, SMALL_SIZE)
        label = f"{n:,} files of {SMALL_SIZE // 1024} KB"
        transfer_rows, _ = bench_transfer.measure(label, tree, on_s3, 1, scratch, small_files=True)
        rows += transfer_rows
        drop(tree.root)
    if "1" in which:
        n = plan.huge_files
        log(f"making a workdir of {n:,} files of 1 KB")
        tree = workload.make_uniform(scratch.fresh("wd-huge"), n, 1024)
        uploaded = bench_checkpoint.upload_both(tree, local, "huge")
        rows.append(
            bench_checkpoint.measure(
                f"{n:,} files / {n * 1024 // MB} MB, 1 changed",
                tree,
                local,
                uploaded,
                lambda i, t=tree: workload.change_one(t, i),
                3,
                CHANGED_GOAL,
                scratch,
            )
        )
        drop(uploaded.ours.root)
        drop(uploaded.baseline)
        drop(tree.root)
        for size, target in ((plan.big_local, local), (plan.big_s3, on_s3)):
            log(f"making a {size // MB} MB file")
            tree = workload.make_big(scratch.fresh("wd-big"), size)
            uploaded = bench_checkpoint.upload_both(tree, target, f"big{size // MB}")
            row = bench_checkpoint.measure(
                f"1 file of {size // MB} MB, 1 MB appended",
                tree,
                target,
                uploaded,
                lambda _i, t=tree: workload.append(t, MB),
                plan.big_rounds,
                1.0,
                scratch,
            )
            rows.append(row)
            if not target.s3:
                drop(uploaded.ours.root)
                drop(uploaded.baseline)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small workdirs, fewer repetitions")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8", help="which benchmarks, e.g. 1,2")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="where workdirs and local remotes go (default: /dev/shm when it has room)",
    )
    args = parser.parse_args(argv)
    which = {w.strip() for w in args.only.split(",") if w.strip()}
    plan = QUICK if args.quick else FULL
    machine = machine_info()
    log(f"machine: {machine}")
    started = time.monotonic()
    need = (plan.small + plan.large) * 3 + plan.big_local * 3
    scratch = Scratch(args.scratch or default_scratch(need))
    rows: list[Row] = []
    try:
        with MotoS3() as s3:
            if which & {"1", "2"}:
                rows += storage(plan, scratch, s3, which)
        if which & {"3", "4"}:
            rows += bench_recovery.run(
                scratch,
                plan.recovery_intervals,
                args.out / "evidence",
                recovery="3" in which,
                idle="4" in which,
            )
        if "5" in which:
            rows += bench_preview.run(scratch, args.quick)
        if "6" in which:
            rows += bench_status.run(scratch, args.quick)
        if "7" in which:
            rows += bench_install.run(scratch, args.quick)
        if "8" in which:
            rows += bench_logs.run(scratch, args.quick)
    finally:
        scratch.cleanup()
    rows.sort(key=lambda r: r.bench.split(".")[0])
    elapsed = time.monotonic() - started
    meta = {
        "mode": "quick" if args.quick else "full",
        "scratch": str(scratch.root.parent)
        + (" (tmpfs: no disk writeback in the timings)" if scratch.root.parent == SHM else ""),
        "sizes": (
            f"workdirs of 1,000 files / {plan.small // MB} MB and 10,000 files / "
            f"{plan.large // MB} MB; appended file {plan.big_local // MB} MB (local), "
            f"{plan.big_s3 // MB} MB (S3); recovery and idle workdir 1,000 files / 20 MB"
        ),
        "benchmarks run": ",".join(sorted(which)),
        "wall time": f"{elapsed:.0f} s",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load at end": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if os.path.exists("/proc/loadavg")
        else "?",
    }
    report.write_all(rows, machine, meta, args.out)
    sys.stdout.write(report.table(rows))
    log(f"wrote {args.out / 'results.md'} and {args.out / 'results.png'} in {elapsed:.0f} s")
    return 0
