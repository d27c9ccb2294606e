"""What every benchmark shares: result rows, timing, the machine, rclone, temp space."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_iterative import storage
from pulumi_iterative.storage import rclone_binary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MB = 1024 * 1024


@dataclass
class Row:
    """One line of the results table: ours against the baseline, medians of `runs` runs."""

    bench: str  # "1. checkpoint"
    case: str  # "1,000 files / 100 MB, 1 changed, local folder"
    ours: float | None  # median, in `unit`
    base: float | None = None  # median of the baseline, same unit; None: no baseline
    unit: str = "s"
    ours_req: float | None = None  # remote requests (median)
    base_req: float | None = None
    req_unit: str = ""  # "rclone calls", "HTTP requests"
    goal: str = ""  # "< 0.2x", "<= 1.0x", "< 1 s"
    met: bool | None = None  # None: not applicable / not measured
    note: str = ""
    why: str = ""  # when the goal is missed: by how much and why, for the results
    runs: int = 1
    samples: dict[str, list[float]] = field(default_factory=dict)  # raw values, for the chart

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.base:
            return None
        return self.ours / self.base

    def spread(self) -> str:
        """The range of each side's samples, e.g. "ours 1.01-1.20 s, baseline 0.98-1.05 s"."""
        parts = [f"{side} {min(v):.3g}-{max(v):.3g} s" for side, v in self.samples.items() if v]
        return ", ".join(parts)

    def overlaps(self) -> bool:
        """Do the two sides' sample ranges overlap (a difference within run-to-run noise)?"""
        ours, base = self.samples.get("ours") or [], self.samples.get("baseline") or []
        return bool(ours and base) and min(ours) <= max(base) and min(base) <= max(ours)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = action()
    return time.perf_counter() - start, out


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the results table."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


# --- the machine ------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    rclone = rclone_binary()
    version = subprocess.run([rclone, "version"], capture_output=True, text=True, check=False)
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "?",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "?",
        "python": platform.python_version(),
        "rclone": (version.stdout.splitlines() or ["?"])[0],
        "os": f"{platform.system()} {platform.release()}",
        "load at start": load,
    }


# --- rclone, as the baseline runs it ----------------------------------------------


def rclone_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "RCLONE_CONFIG": os.devnull, **(extra or {})}


def plain_rclone(*args: str, env: Mapping[str, str] | None = None) -> None:
    """rclone with its defaults (what a plain `rclone copy` or the baseline runs)."""
    subprocess.run(
        [rclone_binary(), *args, "-q"],
        env=rclone_env(env),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@contextlib.contextmanager
def counting_rclone() -> Iterator[list[int]]:
    """Count every rclone invocation the package makes in this process (all Rclone objects)."""
    count = [0]
    original = storage.Rclone.run

    def run(self: storage.Rclone, *args: Any, **kwargs: Any) -> bytes:
        count[0] += 1
        return original(self, *args, **kwargs)

    storage.Rclone.run = run  # type: ignore[method-assign]
    try:
        yield count
    finally:
        storage.Rclone.run = original  # type: ignore[method-assign]


# --- where both sides write ---------------------------------------------------------


@dataclass
class Target:
    """A remote both sides write to: a local folder, or a bucket on moto's S3.

    Each side gets its own prefix; `requests()` counts what moto answered so far
    (0 for a folder, where rclone invocations are counted instead).
    """

    name: str  # "local folder", "S3 (moto)"
    root: str  # a folder, or ":s3:bucket"
    env: dict[str, str] = field(default_factory=dict)
    s3: Any = None  # benchmarks.s3server.MotoS3

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def requests(self) -> int:
        return self.s3.total() if self.s3 else 0

    @property
    def req_unit(self) -> str:
        return "HTTP requests" if self.s3 else "rclone calls"


# --- temp space -------------------------------------------------------------------


SHM = Path("/dev/shm")


def default_scratch(need_bytes: int) -> Path | None:
    """tmpfs when it has room (so disk writeback from earlier steps, or from other
    people's work on a shared machine, does not drown small differences), else the
    temp folder."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    return SHM if st.f_bavail * st.f_frsize > need_bytes else None


class Scratch:
    """One temp folder for the whole run, removed at the end."""

    def __init__(self, under: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pi-bench-", dir=under))

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def fresh(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        return p

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def drop(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
