"""Checkpoints as generations: upload what changed, then the manifest, last.

A generation is one consistent view of a workdir. Its manifest lists every file
with its size, mtime and the generation whose folder holds its body; bodies are
uploaded once, in the generation where they changed. A restore reads the newest
manifest that landed and copies exactly that set, so a generation whose manifest
never landed is invisible. Cost is proportional to what changed: the workdir is
walked locally (stat only), the bucket is never listed to find differences.

Rule for files that change while uploading: a file whose size or mtime differs
after its upload from before it is left out of that generation (its previous
version stays, if any) and is taken by the next checkpoint.

Small files travel in packs (see packs.py): a few objects per generation
instead of one per file. A manifest is either whole (`<seq>.json`) or a delta
(`<seq>.delta.json`: what changed since the whole manifest it names as its
parent), so a checkpoint of one changed file writes a few hundred bytes, not a
list of every file. On Linux the agent learns what changed from inotify
(watch.py) and walks the whole workdir only as a safety net.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat as statmod
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import packs
from .errors import IterativeError, NotFound, TransferError
from .storage import DATA, Rclone, read_json_objects
from .watch import Watcher

log = logging.getLogger(__name__)

BASE = "base"
MANIFESTS = f"{DATA}/manifests"
BODIES = f"{DATA}/gen"
REPLACED_RETRIES = 2  # a file renamed over while it uploaded goes up again this many times
LIST_SOURCE_FROM = 32  # restore: from this many files of one generation, list its folder
FULL_WALK_EVERY = 300.0  # seconds: with inotify, still walk the whole workdir this often
DELTA_MIN = 256  # a delta manifest may hold this many changes, or an eighth of the files
PARALLEL = 4  # packs and generations in flight at once

Stat = tuple[int, int]  # (size, mtime_ns)


def lineage_of(index: int) -> str:
    return f"i{index}"


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    gen: str  # "<lineage>/<seq>": the generation that uploaded the body
    pack: str = ""  # the pack holding it (its sha256); "" = a whole object

    def key(self, path: str) -> str:
        """Where the body lives, below data/."""
        return packs.pack_key(self.gen, self.pack) if self.pack else f"gen/{self.gen}/{path}"

    def to_list(self) -> list[Any]:
        out: list[Any] = [self.size, self.mtime_ns, self.gen]
        return [*out, self.pack] if self.pack else out

    @classmethod
    def from_list(cls, v: list[Any]) -> Entry:
        return cls(int(v[0]), int(v[1]), str(v[2]), str(v[3]) if len(v) > 3 else "")


@dataclass(frozen=True)
class Manifest:
    lineage: str
    seq: int
    machine: str
    time: float
    kind: str  # "base", "auto", "explicit", "signal", "final"
    files: Mapping[str, Entry] = field(default_factory=dict)  # always the whole view
    parent: str = ""  # a delta: the gen id of the whole manifest it was written against
    # A delta read from the bucket: its parent, as read (not written: `parent` names it).
    base: Manifest | None = field(default=None, compare=False, repr=False)

    @property
    def gen(self) -> str:
        return gen_id(self.lineage, self.seq)

    @property
    def path(self) -> str:
        return manifest_path(self.lineage, self.seq, delta=bool(self.parent))

    def to_json(self, delta: tuple[Mapping[str, Entry], Iterable[str]] | None = None) -> bytes:
        """Whole, or as a delta against its parent: (changed or added entries, removed paths)
        since the parent; without `delta` it is worked out from the whole view."""
        head: dict[str, Any] = {
            "lineage": self.lineage,
            "seq": self.seq,
            "machine": self.machine,
            "time": self.time,
            "kind": self.kind,
        }
        if self.parent:
            if delta is None:
                raise ValueError("a delta manifest needs its changes since the parent")
            changed, removed = delta
            head["parent"] = self.parent
            head["files"] = {p: e.to_list() for p, e in sorted(changed.items())}
            head["removed"] = sorted(removed)
        else:
            head["files"] = {p: e.to_list() for p, e in sorted(self.files.items())}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], parent: Manifest | None = None) -> Manifest:
        files = {p: Entry.from_list(v) for p, v in obj["files"].items()}
        name = str(obj.get("parent") or "")
        if name:
            if parent is None or parent.gen != name:
                raise ValueError(f"delta manifest without its parent {name}")
            whole = dict(parent.files)
            for p in obj.get("removed") or ():
                whole.pop(p, None)
            whole.update(files)
            files = whole
        return cls(
            lineage=str(obj["lineage"]),
            seq=int(obj["seq"]),
            machine=str(obj["machine"]),
            time=float(obj["time"]),
            kind=str(obj["kind"]),
            files=files,
            parent=name,
        )


def manifest_path(lineage: str, seq: int, *, delta: bool = False) -> str:
    return f"{MANIFESTS}/{lineage}/{seq:08d}{'.delta' if delta else ''}.json"


def gen_id(lineage: str, seq: int) -> str:
    return f"{lineage}/{seq:08d}"


# --- the local side: which files, and what changed ---------------------------------


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """rclone's filter glob as a regex over slash-separated relative paths.

    A port of rclone's own glob translation (fs/filter/glob.go), so a file is
    left out exactly when `rclone --exclude` would leave it out: `dir/` means
    everything below a folder named dir; a leading `/` anchors at the workdir
    root, otherwise a pattern matches at any depth; `*` stays inside one path
    part, `**` crosses parts, `?` is one character; `[...]` is a character class
    as written (`[^a]` negates; `!` is literal); `{a,b*}` alternates globs;
    `{{regexp}}` embeds a regexp; `\\` escapes. A glob rclone would refuse is
    matched literally (and logged), so a typo never hides files.
    """
    g = glob + "**" if glob.endswith("/") else glob  # rclone: excluding dir/ is dir/**
    try:
        return re.compile(_glob_regex(g))
    except (ValueError, re.error) as exc:
        log.warning(
            "exclude pattern %r is not a valid rclone glob (%s): matching it literally", glob, exc
        )
        return re.compile(
            ("^" if g.startswith("/") else "^(?:.*/)?") + re.escape(g.lstrip("/")) + r"\Z"
        )


def _glob_regex(glob: str) -> str:
    out: list[str] = []
    if glob.startswith("/"):
        glob = glob[1:]
        out.append("^")
    else:
        out.append("^(?:.*/)?")
    stars = 0
    in_braces = in_regexp = regexp_end = slashed = False
    brackets = 0
    last = nxt = ""

    def flush_stars() -> None:
        nonlocal stars
        if stars > 2:
            raise ValueError("too many stars")
        if stars:
            out.append("[^/]*" if stars == 1 else ".*")
        stars = 0

    for c in glob:
        nxt, last = c, nxt
        if slashed:
            out.append(c)
            slashed = False
            continue
        if regexp_end:
            if c == "}":  # `}}}`: the regexp ends with the longest run
                out[-1] = "}"
                out.append(")")
                continue
            regexp_end = False
        if in_regexp:
            if c == "}" and last == "}":
                in_regexp, regexp_end = False, True
                out[-1] = ")"
            else:
                out.append(c)
            continue
        if c != "*":
            flush_stars()
        if brackets:
            out.append(c)
            brackets += (c == "[") - (c == "]")
            continue
        if c == "\\":
            out.append(c)
            slashed = True
        elif c == "*":
            stars += 1
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            out.append(c)
            brackets += 1
        elif c == "]":
            raise ValueError("mismatched ']'")
        elif c == "{":
            if in_braces and last == "{":
                in_regexp, in_braces = True, False
            elif in_braces:
                raise ValueError("can't nest '{' '}'")
            else:
                in_braces = True
                out.append("(")
        elif c == "}":
            if not in_braces:
                raise ValueError("mismatched '{' and '}'")
            out.append(")")
            in_braces = False
        elif c == "," and in_braces:
            out.append("|")
        elif c in ".+()|^$":
            out.append("\\" + c)
        else:
            out.append(c)
    flush_stars()
    if brackets or in_braces or in_regexp or slashed:
        raise ValueError("unclosed '[', '{', '{{' or trailing '\\'")
    out.append(r"\Z")
    return "".join(out)


def _folder_rule(glob: str) -> bool:
    """rclone applies only these to folders: `dir/` and anything with `**`."""
    return glob.endswith("/") or "**" in glob


def excluded(rel: str, patterns: Iterable[str]) -> bool:
    """Is this file (or, ending in `/`, this folder and all below it) left out?"""
    if rel.endswith("/"):
        return any(_folder_rule(p) and _pattern(p).match(rel) for p in patterns)
    return any(_pattern(p).match(rel) for p in patterns)


def scan(
    workdir: str | Path,
    exclude: Iterable[str] = (),
    inodes: dict[str, int] | None = None,
    links: list[str] | None = None,
) -> dict[str, Stat]:
    """Every regular file under workdir (not excluded) -> (size, mtime_ns). Local stats only.

    With `inodes`, each file's inode number is put there too (free: readdir has it).
    Symbolic links are never followed nor taken (see LINKS); with `links`, the ones
    not excluded are listed there, so a caller can say so.
    """
    root = str(workdir)
    patterns = tuple(exclude)
    found: dict[str, Stat] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = os.scandir(os.path.join(root, rel_dir) if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        prefix = f"{rel_dir}/" if rel_dir else ""
        with entries:
            for entry in entries:
                rel = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not patterns or not excluded(rel + "/", patterns):
                            stack.append(rel)
                    elif entry.is_symlink():
                        if links is not None and not (patterns and excluded(rel, patterns)):
                            links.append(rel)
                    elif entry.is_file(follow_symlinks=False) and (
                        not patterns or not excluded(rel, patterns)
                    ):
                        st = entry.stat(follow_symlinks=False)
                        found[rel] = (st.st_size, st.st_mtime_ns)
                        if inodes is not None:
                            inodes[rel] = st.st_ino
                except FileNotFoundError:
                    continue  # removed while we walked: the next checkpoint sees it gone
    return found


_Stat3 = tuple[int, int, int]  # (size, mtime_ns, inode)


def _stat3(root: str | Path, rel: str) -> _Stat3 | None:
    try:
        st = os.stat(os.path.join(root, rel))
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _stat(root: str | Path, rel: str) -> Stat | None:
    try:
        st = os.stat(os.path.join(root, rel))
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


# --- generations -------------------------------------------------------------------


@dataclass
class Checkpointer:
    """One machine's line of generations. Not thread-safe: the agent holds a lock."""

    rclone: Rclone
    workdir: Path
    lineage: str
    machine: str
    exclude: tuple[str, ...] = ()
    current: Manifest | None = None  # the newest generation that landed
    local: dict[str, Stat] = field(default_factory=dict)  # local stats behind `current`
    # Deleting what older generations used is off the critical path when set: a
    # background thread does it after the manifest landed (flush() waits for it).
    background_gc: bool = False
    parent: Manifest | None = None  # the whole manifest deltas are written against
    delta: dict[str, Entry] = field(default_factory=dict)  # changes since `parent`
    delta_removed: set[str] = field(default_factory=set)
    pack_refs: dict[tuple[str, str], int] = field(default_factory=dict)  # own packs' live files
    retry: set[str] = field(default_factory=set)  # left out last time: look again
    watcher: Watcher | None = None
    last_walk: float = 0.0
    gc_pool: ThreadPoolExecutor | None = None
    gc_pending: list[Any] = field(default_factory=list)
    say: Callable[[str], object] = log.warning  # a note for the user (the agent: the task log)
    links_said: list[str] = field(default_factory=list)

    def watch(self) -> bool:
        """Learn changes from the kernel from now on (Linux); False: every checkpoint walks."""
        if self.watcher is None:
            patterns = self.exclude
            self.watcher = Watcher.start(
                str(self.workdir), lambda d: bool(patterns) and excluded(d, patterns)
            )
            self.last_walk = time.monotonic()
        return self.watcher is not None

    def close(self) -> None:
        self.flush()
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.gc_pool is not None:
            self.gc_pool.shutdown(wait=True)
            self.gc_pool = None

    def flush(self) -> None:
        """Wait for background cleanup."""
        pending, self.gc_pending = self.gc_pending, []
        for f in pending:
            f.result()

    def _observe(self, kind: str) -> tuple[dict[str, Stat | None], dict[str, int]]:
        """Paths that may differ from `current` -> their stats now (None: gone), and inodes.

        From inotify when it is watching; a whole walk at the final checkpoint, after
        the kernel dropped events, and every FULL_WALK_EVERY seconds.
        """
        prev = self.current.files if self.current else {}
        changes = None
        inodes: dict[str, int] = {}
        if self.watcher is not None:
            changes = self.watcher.drain()
            walk_due = time.monotonic() - self.last_walk >= FULL_WALK_EVERY
            if changes is None:  # the kernel dropped events: watch anew, then walk
                self.watcher.close()
                self.watcher = None
                self.watch()
            elif walk_due or kind == "final":
                changes = None
        if changes is None:
            links: list[str] = []
            now = scan(self.workdir, self.exclude, inodes, links)
            if links and sorted(links) != self.links_said:
                self.links_said = sorted(links)
                shown = ", ".join(self.links_said[:5]) + (" ..." if len(links) > 5 else "")
                self.say(f"symbolic links are not checkpointed ({LINKS}): {shown}")
            self.last_walk = time.monotonic()
            found: dict[str, Stat | None] = {
                p: st for p, st in now.items() if self.local.get(p) != st or p not in prev
            }
            found.update((p, None) for p in prev if p not in now)
            return found, inodes
        candidates = changes.files | self.retry
        for folder in changes.gone_dirs:
            prefix = folder + "/"
            candidates.update(p for p in prev if p.startswith(prefix))
        root = str(self.workdir)
        patterns = self.exclude
        found = {}
        for p in candidates:
            if patterns and excluded(p, patterns):
                st3 = None
            else:
                try:
                    st = os.lstat(os.path.join(root, p))
                    st3 = (
                        (st.st_size, st.st_mtime_ns, st.st_ino)
                        if statmod.S_ISREG(st.st_mode)
                        else None
                    )
                except (FileNotFoundError, NotADirectoryError):
                    st3 = None
            if st3 is None:
                if p in prev:
                    found[p] = None
            elif self.local.get(p) != st3[:2] or p not in prev:
                found[p] = st3[:2]
                inodes[p] = st3[2]
        return found, inodes

    def checkpoint(self, kind: str) -> Manifest | None:
        """Take a generation of what changed; None when nothing did."""
        observed, inodes = self._observe(kind)
        try:
            return self._checkpoint(kind, observed, inodes)
        except BaseException:
            self.retry.update(observed)  # the kernel will not tell us about these again
            raise

    def _checkpoint(
        self, kind: str, observed: dict[str, Stat | None], inodes: dict[str, int]
    ) -> Manifest | None:
        prev = self.current.files if self.current else {}
        changed = sorted(p for p, st in observed.items() if st is not None)
        removed = [p for p, st in observed.items() if st is None and p in prev]
        if not changed and not removed and not self._promotes(kind):
            self.retry = set()
            return None
        seq = self.current.seq + 1 if self.current and self.current.lineage == self.lineage else 1
        gen = gen_id(self.lineage, seq)
        seen = {p: st for p, st in observed.items() if st is not None}
        landed = self._upload_all(changed, seen, inodes, gen)
        files: dict[str, Entry] = dict(prev)
        local = dict(self.local)
        torn: list[str] = []
        updates: dict[str, Entry | None] = {}
        for p in removed:
            files.pop(p, None)
            local.pop(p, None)
            updates[p] = None
        for p in changed:
            if p in landed:
                st, digest = landed[p]
                files[p] = Entry(st[0], st[1], gen, digest)
                local[p] = st
                updates[p] = files[p]
            else:
                torn.append(p)  # the last complete version, if any, stays in this generation
        parent, delta, delta_removed = self._next_delta(updates, files)
        manifest = Manifest(
            self.lineage,
            seq,
            self.machine,
            time.time(),
            kind,
            files,
            parent=parent.gen if parent is not None else "",
        )
        body = manifest.to_json((delta, delta_removed) if parent is not None else None)
        self.rclone.write(self.rclone.remote.path(manifest.path), body)
        old, old_parent = self.current, self.parent
        self.current, self.local, self.retry = manifest, local, set(torn)
        self.parent = parent if parent is not None else manifest
        self.delta, self.delta_removed = delta, delta_removed
        if torn:
            log.info(
                "generation %s left out %d file(s) that changed while uploading", gen, len(torn)
            )
        torn_bodies = [p for p in torn if seen[p][0] >= packs.SMALL_FILE]
        garbage = self._garbage(old, old_parent, manifest, prev, updates, torn_bodies)
        if self.background_gc:
            if self.gc_pool is None:
                self.gc_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gc")
            self.gc_pending = [f for f in self.gc_pending if not f.done()]
            self.gc_pending.append(self.gc_pool.submit(self._delete, garbage))
        else:
            self._delete(garbage)
        return manifest

    def _next_delta(
        self, updates: dict[str, Entry | None], files: dict[str, Entry]
    ) -> tuple[Manifest | None, dict[str, Entry], set[str]]:
        """The parent to write a delta against (None: write whole) and the delta."""
        parent = self.parent
        if parent is None or parent.lineage not in (self.lineage, BASE):
            return None, {}, set()
        delta, gone = dict(self.delta), set(self.delta_removed)
        before = parent.files
        for p, e in updates.items():
            if e is None:
                delta.pop(p, None)
                if p in before:
                    gone.add(p)
            else:
                gone.discard(p)
                if before.get(p) == e:
                    delta.pop(p, None)
                else:
                    delta[p] = e
        if len(delta) + len(gone) > max(DELTA_MIN, len(files) // 8):
            return None, {}, set()
        return parent, delta, gone

    def _upload_all(
        self, changed: list[str], seen: dict[str, Stat], inodes: dict[str, int], gen: str
    ) -> dict[str, tuple[Stat, str]]:
        """Upload changed files: small ones in packs, big ones whole, side by side.
        Returns path -> (stats of the body uploaded, pack or "")."""
        small = [p for p in changed if seen[p][0] < packs.SMALL_FILE]
        large = [p for p in changed if seen[p][0] >= packs.SMALL_FILE]
        landed: dict[str, tuple[Stat, str]] = {}
        dest = self.rclone.remote.path(BODIES, gen)
        if large and small:
            with ThreadPoolExecutor(max_workers=1) as pool:
                bodies = pool.submit(self._upload, large, seen, inodes, dest)
                landed.update(ship_packs(self.rclone, self.workdir, small, gen))
                landed.update((p, (st, "")) for p, st in bodies.result().items())
        elif large:
            landed.update(
                (p, (st, "")) for p, st in self._upload(large, seen, inodes, dest).items()
            )
        else:
            landed.update(ship_packs(self.rclone, self.workdir, small, gen))
        return landed

    def _promotes(self, kind: str) -> bool:
        """A consistency point asked for when a background checkpoint already holds the
        same files: it still needs a generation of its own (a manifest only), or the
        replacement would restore an `auto` generation and take background checkpoints
        of a set the script never declared whole."""
        current = self.current
        return (
            kind == "explicit"
            and current is not None
            and current.lineage == self.lineage  # (the base is not a background generation)
            and current.kind != kind
        )

    def _upload(
        self, changed: list[str], seen: dict[str, Stat], inodes: dict[str, int], dest: str
    ) -> dict[str, Stat]:
        """Upload the changed files; return those whose body is the version their stats say.

        A file modified in place since it was scanned is left out (its body may be
        torn). A file replaced whole since it was scanned (written aside, then renamed
        over: another inode) was read complete, but which version is unknown: it goes
        up again, as it is now, up to REPLACED_RETRIES times, so a file rewritten that
        way every fraction of a second still lands.
        """
        expected: dict[str, _Stat3] = {p: (*seen[p], inodes.get(p, -1)) for p in changed}
        landed: dict[str, Stat] = {}
        pending = changed
        for attempt in range(REPLACED_RETRIES + 1):
            self.rclone.copy_files(str(self.workdir), dest, pending)
            again = []
            for p in pending:
                after = _stat3(self.workdir, p)
                if after == expected[p]:
                    landed[p] = after[:2]
                elif after is not None and after[2] != expected[p][2]:
                    expected[p] = after
                    again.append(p)
            if not again or attempt == REPLACED_RETRIES:
                break
            pending = again
        return landed

    def _garbage(
        self,
        old: Manifest | None,
        old_parent: Manifest | None,
        new: Manifest,
        prev: Mapping[str, Entry],
        updates: dict[str, Entry | None],
        torn_bodies: list[str],
    ) -> list[str]:
        """What only older generations of this lineage used (keys below data/): the
        bodies and packs the changed paths no longer need, and superseded manifests."""
        own = self.lineage + "/"
        garbage = [f"gen/{new.gen}/{p}" for p in torn_bodies]
        refs = self.pack_refs
        for p, e in updates.items():
            if e is not None and e.pack:
                refs[(e.gen, e.pack)] = refs.get((e.gen, e.pack), 0) + 1
            was = prev.get(p)
            if was is None or not was.gen.startswith(own):
                continue
            if not was.pack:
                garbage.append(was.key(p))
                continue
            left = refs.get((was.gen, was.pack), 0) - 1
            if left > 0:
                refs[(was.gen, was.pack)] = left
            else:
                refs.pop((was.gen, was.pack), None)
                garbage.append(was.key(p))
        keep = {new.path, self.parent.path if self.parent else new.path}
        for m in (old, old_parent):
            if m is not None and m.lineage == self.lineage and m.path not in keep:
                garbage.append(m.path.removeprefix(DATA + "/"))
        return sorted(set(garbage))

    def _delete(self, garbage: list[str]) -> None:
        try:
            self.rclone.delete_files(self.rclone.remote.path(DATA), garbage)
        except Exception as exc:  # garbage left behind costs storage, never correctness
            log.warning("could not clean up old generations: %s", exc)

    def adopt(
        self, manifest: Manifest, local: dict[str, Stat], parent: Manifest | None = None
    ) -> None:
        """Continue from a restored generation (its own lineage or the base); `parent`
        is the whole manifest a delta `manifest` was written against."""
        self.current, self.local = manifest, local
        parent = parent or manifest.base
        if manifest.parent and parent is not None and parent.gen == manifest.parent:
            self.parent = parent
            before = parent.files
            self.delta = {p: e for p, e in manifest.files.items() if before.get(p) != e}
            self.delta_removed = {p for p in before if p not in manifest.files}
        elif manifest.parent:
            self.parent, self.delta, self.delta_removed = None, {}, set()
        else:
            self.parent, self.delta, self.delta_removed = manifest, {}, set()
        own = self.lineage + "/"
        refs: dict[tuple[str, str], int] = {}
        for e in manifest.files.values():
            if e.pack and e.gen.startswith(own):
                refs[(e.gen, e.pack)] = refs.get((e.gen, e.pack), 0) + 1
        self.pack_refs = refs


def ship_packs(
    rclone: Rclone, root: str | Path, paths: list[str], gen: str
) -> dict[str, tuple[Stat, str]]:
    """Pack the files and upload the packs, PARALLEL at a time; path -> (stats, pack)."""
    landed: dict[str, tuple[Stat, str]] = {}
    if not paths:
        return landed

    def send(pack: packs.Pack) -> packs.Pack:
        rclone.write(rclone.remote.path(DATA, packs.pack_key(gen, pack.digest)), pack.body)
        return pack

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        inflight: list[Any] = []
        for pack in packs.build(root, paths):
            if len(inflight) >= PARALLEL:
                done = inflight.pop(0).result()
                landed.update((p, (st, done.digest)) for p, st in done.files.items())
            inflight.append(pool.submit(send, pack))
        for f in inflight:
            done = f.result()
            landed.update((p, (st, done.digest)) for p, st in done.files.items())
    return landed


def manifests(rclone: Rclone, lineages: Iterable[str] | None = None) -> list[Manifest]:
    """The newest landed manifest of each lineage (all lineages when None), whole: one
    listing, one read, and one more read for the parents of deltas."""
    wanted = set(lineages) if lineages is not None else None
    newest: dict[str, tuple[int, str]] = {}
    for item in rclone.list(rclone.remote.path(MANIFESTS), recursive=True):
        path = item["Path"]
        lineage, _, name = path.rpartition("/")
        if not name.endswith(".json") or (wanted is not None and lineage not in wanted):
            continue
        try:
            seq = int(name.split(".", 1)[0])
        except ValueError:
            continue
        if (seq, path) > newest.get(lineage, (-1, "")):
            newest[lineage] = (seq, path)
    found = _read_objects(rclone, [p for _, p in newest.values()])
    parents = sorted(
        {
            manifest_path(*_split_gen(str(o["parent"]))).removeprefix(MANIFESTS + "/")
            for o in found
            if o.get("parent")
        }
    )
    by_gen: dict[str, Manifest] = {}
    for obj in _read_objects(rclone, parents):
        try:
            m = Manifest.from_obj(obj)
        except (KeyError, TypeError, ValueError):
            continue
        by_gen[m.gen] = m
    out = []
    for obj in found:
        try:
            m = Manifest.from_obj(obj, by_gen.get(str(obj.get("parent") or "")))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("manifest %s/%s unreadable: %s", obj.get("lineage"), obj.get("seq"), exc)
            continue
        out.append(replace(m, base=by_gen[m.parent]) if m.parent else m)
    return out


def _split_gen(gen: str) -> tuple[str, int]:
    lineage, _, seq = gen.rpartition("/")
    return lineage, int(seq)


def _read_objects(rclone: Rclone, paths: list[str]) -> list[dict[str, Any]]:
    if not paths:
        return []
    return read_json_objects(rclone.cat_many(rclone.remote.path(MANIFESTS), sorted(paths)))


def latest(rclone: Rclone, lineage: str) -> Manifest | None:
    found = manifests(rclone, [lineage])
    return found[0] if found else None


def restore(
    rclone: Rclone,
    manifest: Manifest,
    dest: str | Path,
    paths: Iterable[str] | None = None,
    *,
    show_progress: bool = False,
) -> dict[str, Stat]:
    """Copy exactly the manifest's files (or the given subset) into dest; return local stats.

    Whole bodies come with one rclone copy per generation; packs are streamed and
    unpacked, each checked against its hash. PARALLEL of them at a time.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    chosen = manifest.files if paths is None else {p: manifest.files[p] for p in paths}
    by_gen: dict[str, list[str]] = defaultdict(list)
    by_pack: dict[tuple[str, str], dict[str, Stat]] = defaultdict(dict)
    for p, e in chosen.items():
        if e.pack:
            by_pack[(e.gen, e.pack)][p] = (e.size, e.mtime_ns)
        else:
            by_gen[e.gen].append(p)

    def fetch(gen: str) -> None:
        rclone.copy_files(
            rclone.remote.path(BODIES, gen),
            str(dest),
            sorted(by_gen[gen]),
            # Many files of one generation: list its folder (a request per 1,000 on a
            # bucket) rather than look each one up (a request per file).
            list_src=len(by_gen[gen]) >= LIST_SOURCE_FROM,
            show_progress=show_progress,
        )

    def unpack(key: tuple[str, str]) -> None:
        gen, digest = key
        with rclone.open_read(rclone.remote.path(DATA, packs.pack_key(gen, digest))) as stream:
            packs.unpack(stream, digest, by_pack[key], dest)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        jobs = [pool.submit(unpack, k) for k in sorted(by_pack, key=lambda k: -len(by_pack[k]))]
        jobs += [pool.submit(fetch, g) for g in sorted(by_gen)]
        for job in jobs:
            job.result()
    local: dict[str, Stat] = {}
    for p in chosen:
        st = _stat(dest, p)
        if st is None:
            raise NotFound(f"{p} of generation {manifest.gen} is missing after restore")
        local[p] = st
    return local


@dataclass(frozen=True)
class Restored:
    """What a boot's restore found: the generation it restored (None: nothing to restore),
    its files' local stats, and the newer generations it had to pass over, with why."""

    manifest: Manifest | None
    local: dict[str, Stat]
    passed_over: tuple[str, ...] = ()  # "<gen>: <why>", newest first
    broken: tuple[str, ...] = ()  # their manifest paths (under data/), for cleanup


def restore_newest_whole(rclone: Rclone, lineage: str, dest: str | Path) -> Restored:
    """Restore the newest generation of `lineage` that is whole, else the base's newest.

    A generation is whole when its manifest (and, for a delta, its parent) parses and
    every body and pack it lists is there and intact. A damaged one (a manifest cut
    short, a body removed, a torn pack) is passed over, and the next older one tried,
    down to the upload from create: a damaged bucket costs progress, never the boot.
    `dest` must be empty: it is emptied again between tries.
    """
    dest = Path(dest)
    passed_over: list[str] = []
    broken: list[str] = []
    for source in (lineage, BASE):
        listed = rclone.list(rclone.remote.path(MANIFESTS, source))
        names = [e["Path"] for e in listed if e["Path"].endswith(".json")]
        for name in sorted(names, key=lambda n: (n.split(".", 1)[0], n), reverse=True):
            path = f"{MANIFESTS}/{source}/{name}"
            try:
                obj = json.loads(rclone.cat(rclone.remote.path(path)))
                parent = None
                if obj.get("parent"):
                    parent_path = manifest_path(*_split_gen(str(obj["parent"])))
                    parent = Manifest.from_obj(
                        json.loads(rclone.cat(rclone.remote.path(parent_path)))
                    )
                manifest = Manifest.from_obj(obj, parent)
                if parent is not None:
                    manifest = replace(manifest, base=parent)
                local = restore(rclone, manifest, dest)
                return Restored(manifest, local, tuple(passed_over), tuple(broken))
            except (NotFound, TransferError, ValueError, KeyError, TypeError) as exc:
                log.warning("generation %s/%s cannot be restored: %s", source, name, exc)
                passed_over.append(f"{source}/{name.split('.', 1)[0]}: {exc}")
                broken.append(path.removeprefix(DATA + "/"))
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True, exist_ok=True)
    return Restored(None, {}, tuple(passed_over), tuple(broken))


def remove_orphans(rclone: Rclone, lineage: str, restored: Restored) -> int:
    """At boot: remove the bodies and packs of `lineage` that the restored generation
    does not use (those of a generation whose manifest never landed, or of a damaged
    one), and the damaged manifests. Only this index's machine writes its lineage, and
    it has not started checkpointing yet. Returns how many objects went."""
    live: set[str] = set()
    keep_manifests: set[str] = set()
    if restored.manifest is not None:
        live = {e.key(p) for p, e in restored.manifest.files.items()}
        keep_manifests.add(restored.manifest.path.removeprefix(DATA + "/"))
        if restored.manifest.parent:
            parent = manifest_path(*_split_gen(restored.manifest.parent))
            keep_manifests.add(parent.removeprefix(DATA + "/"))
    garbage = []
    for folder in ("gen", "packs"):
        for e in rclone.list(rclone.remote.path(DATA, folder, lineage), recursive=True):
            key = f"{folder}/{lineage}/{e['Path']}"
            if not e.get("IsDir") and key not in live:
                garbage.append(key)
    garbage += [
        p
        for p in restored.broken
        if p.startswith(f"manifests/{lineage}/") and p not in keep_manifests
    ]
    if garbage:
        rclone.delete_files(rclone.remote.path(DATA), garbage)
    return len(garbage)


def merged(found: Iterable[Manifest]) -> Manifest | None:
    """One view across lineages (parallel machines): for each path the newest version.

    Every machine lineage starts from the base, so once one exists the base adds
    nothing but the files the machines deleted: it counts only while no machine
    has checkpointed yet.
    """
    found = list(found)
    if any(m.lineage != BASE for m in found):
        found = [m for m in found if m.lineage != BASE]
    found = sorted(found, key=lambda m: (m.lineage != BASE, m.time))
    if not found:
        return None
    files: dict[str, Entry] = {}
    for m in found:
        for p, e in m.files.items():
            if p not in files or e.mtime_ns >= files[p].mtime_ns:
                files[p] = e
    last = found[-1]
    return Manifest("merged", last.seq, last.machine, last.time, "merged", files)


def pull(rclone: Rclone, dest: str | Path, prefix: str, *, show_progress: bool = False) -> int:
    """Bring files under `prefix` (relative to the workdir) from the newest generations
    into dest; return how many.

    While machines run, a newer generation may land and collect the bodies of the
    one just read: then the newest manifests are read again.
    """
    prefix = prefix.strip("/")
    tries = 3
    while True:
        view = merged(manifests(rclone))
        if view is None:
            return 0
        chosen = [p for p in view.files if not prefix or p == prefix or p.startswith(prefix + "/")]
        try:
            restore(rclone, view, dest, chosen, show_progress=show_progress)
            return len(chosen)
        except NotFound:
            tries -= 1
            if not tries:
                raise


# Symbolic links are refused at create, and left out of checkpoints with a note in the
# task's log, never dropped in silence. Following one could upload a dataset or a home
# folder that only happens to be linked; links are not kept as links (yet).
LINKS = "replace a link with a copy of what it points to, or exclude it"


def links_refused(links: list[str]) -> IterativeError:
    shown = ", ".join(sorted(links)[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
    return IterativeError(
        f"storage.workdir has symbolic links, which are not uploaded: {shown}; {LINKS} "
        "(storage.exclude)"
    )


def upload_base(
    rclone: Rclone,
    workdir: str | Path,
    exclude: Iterable[str],
    *,
    show_progress: bool = False,
    empty: bool = False,
) -> Manifest:
    """The workdir as the task starts: generation base/00000000 (empty: no workdir).

    Small files go up in packs while rclone copies the big ones whole, side by
    side; the manifest is written only after both landed.
    """
    if not empty and not Path(workdir).is_dir():
        raise NotFound(f"storage.workdir {workdir} is not a folder (anymore?); create it")
    # One daemon for every call costs one rclone start (unless the transfer shows
    # progress on a terminal); it comes up while the workdir is walked.
    own_daemon = not empty and rclone.daemon is None
    if own_daemon:
        rclone.start_daemon()
    try:
        links: list[str] = []
        now = {} if empty else scan(workdir, exclude, links=links)
        if links:
            raise links_refused(links)
        gen = gen_id(BASE, 0)
        small = sorted(p for p, st in now.items() if st[0] < packs.SMALL_FILE)
        large = sorted(p for p, st in now.items() if st[0] >= packs.SMALL_FILE)
        files: dict[str, Entry] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            bodies = pool.submit(
                rclone.copy_files,
                str(workdir),
                rclone.remote.path(BODIES, gen),
                large,
                show_progress=show_progress,
            )
            for p, (st, digest) in ship_packs(rclone, workdir, small, gen).items():
                files[p] = Entry(st[0], st[1], gen, digest)
            bodies.result()
        # A big file that changed meanwhile is as rclone read it: take its stats now.
        for p in large:
            st = _stat(workdir, p) or now[p]
            files[p] = Entry(st[0], st[1], gen)
        manifest = Manifest(BASE, 0, "workstation", time.time(), "base", files)
        rclone.write(rclone.remote.path(manifest.path), manifest.to_json())
    finally:
        if own_daemon:
            rclone.stop_daemon()
    return manifest
