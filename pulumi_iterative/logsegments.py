"""Script output as append-only segments: every byte is uploaded once.

A boot's log is the objects

    logs/<machine>/<offset>.log      (offset: 12 digits, the segment's first byte)

each holding the bytes the agent had not shipped yet when it shipped. The log
is their concatenation in offset order (`rclone cat` of the folder gives it).
The agent ships every few seconds while a boot is young, and less often once
it has run a while (SLOW_AFTER), so a day-long job leaves thousands of
segments, not tens of thousands; readers fetch only the segments they need:
`logs --follow` those past what it printed, status the last ones.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .storage import LOGS, Rclone

FAST_INTERVAL = 3.0  # seconds between shipments while a boot is young
SLOW_INTERVAL = 30.0  # ... and after SLOW_AFTER seconds
SLOW_AFTER = 300.0
EAGER_BYTES = 1024 * 1024  # this much new output is shipped at once, whatever the interval


def segment_name(machine: str, offset: int) -> str:
    return f"{machine}/{offset:012d}.log"


@dataclass
class LogShipper:
    """The agent's side: ship what is new in the local log file."""

    rclone: Rclone
    local: Path
    machine: str
    sent: int = 0
    started: float = 0.0
    last: float = 0.0
    uploaded: int = 0  # bytes, for benchmarks

    def due(self, now: float) -> bool:
        interval = FAST_INTERVAL if now - self.started < SLOW_AFTER else SLOW_INTERVAL
        return now - self.last >= interval

    def ship(self, *, force: bool = False, now: float | None = None) -> int:
        """Upload the new bytes as one segment; returns how many (0: nothing or not due)."""
        now = time.monotonic() if now is None else now
        if not self.started:
            self.started = now
        try:
            size = self.local.stat().st_size
        except FileNotFoundError:
            return 0
        pending = size - self.sent
        if pending <= 0 or not (force or pending >= EAGER_BYTES or self.due(now)):
            return 0
        with open(self.local, "rb") as fh:
            fh.seek(self.sent)
            data = fh.read(pending)
        path = self.rclone.remote.path(LOGS, segment_name(self.machine, self.sent))
        self.rclone.write(path, data)
        self.sent += len(data)
        self.uploaded += len(data)
        self.last = now
        return len(data)


@dataclass(frozen=True)
class Segment:
    machine: str
    offset: int
    size: int
    path: str  # below logs/


def listing(rclone: Rclone) -> dict[str, list[Segment]]:
    """machine -> its segments in order, from one listing. An older agent's whole
    `logs/<machine>.log` counts as one segment at offset 0."""
    out: dict[str, list[Segment]] = {}
    for e in rclone.list(rclone.remote.path(LOGS), recursive=True):
        path = e["Path"]
        machine, _, name = path.rpartition("/")
        if not name.endswith(".log"):
            continue
        if not machine:  # the older layout: one whole file
            out.setdefault(name[: -len(".log")], []).append(Segment(name, 0, e["Size"], path))
            continue
        try:
            offset = int(name[: -len(".log")])
        except ValueError:
            continue
        out.setdefault(machine, []).append(Segment(machine, offset, int(e["Size"]), path))
    for segs in out.values():
        segs.sort(key=lambda s: s.offset)
    return out


def fetch(
    rclone: Rclone,
    since: Mapping[str, int] | None = None,
    tail: int | None = None,
) -> dict[str, tuple[bytes, int, int]]:
    """machine -> (bytes, offset of the first, end offset) of each boot's log.

    `since`: only bytes from these offsets on (per machine; others from 0).
    `tail`: only the last segments, holding at least this many bytes.
    One listing and one transfer for every machine together.
    """
    chosen: dict[str, list[Segment]] = {}
    for machine, segs in listing(rclone).items():
        start = (since or {}).get(machine, 0)
        picked = [s for s in segs if s.offset + s.size > start]
        if tail is not None:
            kept: list[Segment] = []
            total = 0
            for s in reversed(picked):
                kept.append(s)
                total += s.size
                if total >= tail:
                    break
            picked = kept[::-1]
        chosen[machine] = picked
    paths = [s.path for segs in chosen.values() for s in segs]
    out: dict[str, tuple[bytes, int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="iterative-logs-") as tmp:
        if paths:
            rclone.copy_files(rclone.remote.path(LOGS), tmp, paths, list_src=len(paths) > 32)
        for machine, segs in sorted(chosen.items()):
            start = (since or {}).get(machine, 0)
            parts: list[bytes] = []
            first = segs[0].offset if segs else start
            end = first
            for s in segs:
                try:
                    data = Path(tmp, s.path).read_bytes()
                except FileNotFoundError:
                    continue  # removed meanwhile (delete): leave it out
                if s.offset > end and parts:
                    parts.append(f"\n[... {s.offset - end} bytes missing ...]\n".encode())
                parts.append(data)
                end = s.offset + len(data)
            blob = b"".join(parts)
            if segs and start > first:  # the first segment began before what was asked
                blob = blob[start - first :]
                first = start
            out[machine] = (blob, first, end)
    return out
