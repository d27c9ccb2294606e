"""What changed in a workdir, from the kernel (inotify), so a checkpoint need not walk it.

A Watcher keeps a watch on every folder of the workdir (excluded folders left
out) and turns the kernel's events into the set of paths that may have changed
since the last drain: files written, created, removed, renamed or touched, and
folders that appeared (walked once, and watched from then on) or went away.
The checkpoint then stats only those paths.

The kernel can drop events (its queue overflowed) and a watch cannot be added
beyond the user's limit; either makes `drain` answer None, and the caller walks
the whole workdir instead. Off Linux, or without the inotify_simple package,
`Watcher.start` returns None and every checkpoint walks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Changes:
    files: set[str] = field(default_factory=set)  # may have changed, appeared or gone
    gone_dirs: set[str] = field(default_factory=set)  # everything below them may be gone


class Watcher:
    def __init__(self, root: str, skip_dir: Callable[[str], bool], inotify: Any, flags: Any):
        self.root = root
        self.skip_dir = skip_dir  # rel folder path (ending in "/") -> excluded?
        self.inotify, self.flags = inotify, flags
        self.dirs: dict[int, str] = {}  # watch descriptor -> rel folder ("" = root)
        self.broken = False
        f = flags
        self.mask = (
            f.CLOSE_WRITE
            | f.MODIFY
            | f.ATTRIB
            | f.CREATE
            | f.DELETE
            | f.MOVED_FROM
            | f.MOVED_TO
            | f.DELETE_SELF
            | f.MOVE_SELF
        )

    @classmethod
    def start(cls, root: str, skip_dir: Callable[[str], bool]) -> Watcher | None:
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux, or the package is missing: walk instead
            return None
        try:
            watcher = cls(root, skip_dir, INotify(nonblocking=True), flags)
        except OSError as exc:
            log.info("inotify unavailable (%s): checkpoints walk the workdir", exc)
            return None
        watcher._add_tree("", Changes())
        if watcher.broken:
            watcher.close()
            return None
        return watcher

    def close(self) -> None:
        self.inotify.close()

    def _add_tree(self, rel: str, into: Changes) -> None:
        """Watch rel and every folder below it; files found there count as changed
        (they may have been written before the watch was in place)."""
        stack = [rel]
        while stack:
            folder = stack.pop()
            path = os.path.join(self.root, folder) if folder else self.root
            try:
                wd = self.inotify.add_watch(path, self.mask)
            except FileNotFoundError:
                continue
            except OSError as exc:  # ENOSPC: the user's watch limit
                log.info("inotify watch on %s failed (%s): walking instead", path, exc)
                self.broken = True
                return
            self.dirs[wd] = folder
            prefix = folder + "/" if folder else ""
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                child = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if not self.skip_dir(child + "/"):
                        stack.append(child)
                elif rel:  # the first walk's files are the caller's baseline
                    into.files.add(child)

    def drain(self) -> Changes | None:
        """Paths that may have changed since the last drain; None: walk everything."""
        if self.broken:
            return None
        f = self.flags
        out = Changes()
        while True:
            events = self.inotify.read(timeout=0)
            if not events:
                break
            for ev in events:
                if ev.mask & f.Q_OVERFLOW:
                    self.broken = True
                    return None
                folder = self.dirs.get(ev.wd)
                if folder is None:
                    continue
                if ev.mask & (f.DELETE_SELF | f.MOVE_SELF | f.IGNORED):
                    if ev.mask & f.IGNORED:
                        self.dirs.pop(ev.wd, None)
                    if folder:
                        out.gone_dirs.add(folder)
                    continue
                if not ev.name:
                    continue
                rel = f"{folder}/{ev.name}" if folder else ev.name
                if ev.mask & f.ISDIR:
                    if ev.mask & (f.CREATE | f.MOVED_TO) and not self.skip_dir(rel + "/"):
                        self._add_tree(rel, out)
                        if self.broken:
                            return None
                    if ev.mask & (f.DELETE | f.MOVED_FROM):
                        out.gone_dirs.add(rel)
                    continue
                out.files.add(rel)
        return out
