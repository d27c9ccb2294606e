"""1. Checkpoint cost: ours (sync.Checkpointer.checkpoint, through the agent's rclone
daemon, as the agent runs it) against one turn of the baseline's data loop
(`find` for the newest mtime + a full `rclone sync`, run by baseline.sh), on the
same workdir, to the same kind of remote, with the same rclone binary.

Both start from the workdir already in the bucket (benchmark 2's last upload, or
an untimed one for the big file). Each round changes the workdir once (one small
file rewritten, or the big file appended), then times both sides, alternating
which goes first. Round 0 is a warm-up and is not counted: after it our
generations are in their steady state (garbage collection of the previous
generation runs every time) and the baseline has its newest mtime. Requests are
rclone calls (processes for the baseline, operations for ours) for a local
folder, and the HTTP requests moto answered for S3.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pulumi_iterative import sync
from pulumi_iterative.storage import Rclone, rclone_binary

from .bench_transfer import Uploaded
from .common import HERE, Row, Scratch, Target, log, median, plain_rclone, rclone_env, timed
from .workload import Tree

BASELINE = str(HERE / "baseline.sh")


def baseline_turn(workdir: Path, remote: str, epoch: Path, env: dict[str, str]) -> str:
    """One turn of the baseline's data loop: "synced" or "unchanged"."""
    proc = subprocess.run(
        ["bash", BASELINE, "once", str(workdir), remote, str(epoch)],
        env=rclone_env({**env, "RCLONE_BIN": rclone_binary()}),
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def upload_both(tree: Tree, target: Target, prefix: str) -> Uploaded:
    """Untimed setup for a tree benchmark 2 does not cover."""
    from .bench_transfer import _ours_remote

    remote = _ours_remote(target, f"ours-{prefix}")
    manifest = sync.upload_base(Rclone(remote), tree.root, ())
    base_root = target.path(f"base-{prefix}")
    plain_rclone("copy", str(tree.root), f"{base_root}/data", env=target.env)
    return Uploaded(remote, manifest, base_root)


def measure(
    label: str,
    tree: Tree,
    target: Target,
    start: Uploaded,
    change: Callable[[int], object],
    rounds: int,
    goal: float,
    scratch: Scratch,
) -> Row:
    rclone = Rclone(start.ours)
    rclone.start_daemon()
    # As the agent runs it: changes from inotify, cleanup off the critical path.
    ckpt = sync.Checkpointer(rclone, tree.root, sync.lineage_of(0), "0-bench", background_gc=True)
    ckpt.adopt(start.base_manifest, sync.scan(tree.root))
    ckpt.watch()
    epoch = scratch.path("epochs") / f"{start.baseline.replace('/', '_').replace(':', '_')}.txt"
    epoch.unlink(missing_ok=True)

    ours_t: list[float] = []
    base_t: list[float] = []
    ours_r: list[float] = []
    base_r: list[float] = []

    def ours() -> None:
        calls, before = rclone.calls, target.requests()
        seconds, manifest = timed(lambda: ckpt.checkpoint("auto"))
        assert manifest is not None, "our checkpoint saw no change"
        ours_t.append(seconds)
        ours_r.append(target.requests() - before if target.s3 else rclone.calls - calls)

    def baseline() -> None:
        before = target.requests()
        seconds, said = timed(lambda: baseline_turn(tree.root, start.baseline, epoch, target.env))
        assert said == "synced", "the baseline saw no change"
        base_t.append(seconds)
        base_r.append(target.requests() - before if target.s3 else 1)

    try:
        for i in range(rounds + 1):  # round 0 warms both up
            change(i)
            for side in (ours, baseline) if i % 2 else (baseline, ours):
                side()
            if i == 0:
                for samples in (ours_t, base_t, ours_r, base_r):
                    samples.clear()
    finally:
        ckpt.close()
        rclone.stop_daemon()
    row = Row(
        "1. checkpoint",
        f"{label}, {target.name}",
        median(ours_t),
        median(base_t),
        ours_req=median(ours_r),
        base_req=median(base_r),
        req_unit=target.req_unit,
        goal=f"< {goal:g}x" if goal < 1 else "<= 1x (never slower)",
        runs=rounds,
        samples={"ours": ours_t, "baseline": base_t},
    )
    assert row.ratio is not None
    row.met = row.ratio < goal if goal < 1 else row.ratio <= goal
    if goal >= 1:
        row.note = f"both upload the whole file again; {row.spread()}"
    if not row.met and goal >= 1:
        row.why = (
            f"{(row.ratio - 1) * 100:.0f}% slower at the median"
            + (" (the sides' ranges overlap: " + row.spread() + ")" if row.overlaps() else "")
            + ". Both re-upload the whole file with the same rclone; ours then deletes the "
            "superseded body (on a local folder, freeing a big file takes ~0.15 s per GB), "
            "because it never overwrites the last good version where the baseline's sync "
            "overwrites it in place. Next: delete superseded bodies after the manifest "
            "lands, off the checkpoint's critical path."
        )
    elif not row.met:
        row.why = (
            f"{row.ratio:.2f}x ({row.spread()}). Ours no longer walks the workdir (inotify) "
            "nor writes every file's entry (a delta manifest): what is left is two calls to "
            "the rclone daemon, the changed file's pack and then the manifest, which must "
            "come after it; Python's own part is under 1 ms. Each call costs a few ms on "
            "an idle machine and several times that when the 2 cores are shared, so the "
            "ratio is best where the baseline's walk is biggest. Next: write a one-file "
            "generation as one object (the body inside the delta manifest)."
        )
    log(f"checkpoint: {label}, {target.name}: ours {row.ours:.3f}s, baseline {row.base:.3f}s")
    return row
