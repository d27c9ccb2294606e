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
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import IterativeError, NotFound
from .storage import DATA, Rclone, read_json_objects

log = logging.getLogger(__name__)

BASE = "base"
MANIFESTS = f"{DATA}/manifests"
BODIES = f"{DATA}/gen"
REPLACED_RETRIES = 2  # a file renamed over while it uploaded goes up again this many times
LIST_SOURCE_FROM = 32  # restore: from this many files of one generation, list its folder

Stat = tuple[int, int]  # (size, mtime_ns)


def lineage_of(index: int) -> str:
    return f"i{index}"


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    gen: str  # "<lineage>/<seq>": where the body lives


@dataclass(frozen=True)
class Manifest:
    lineage: str
    seq: int
    machine: str
    time: float
    kind: str  # "base", "auto", "explicit", "signal", "final"
    files: Mapping[str, Entry] = field(default_factory=dict)

    @property
    def gen(self) -> str:
        return gen_id(self.lineage, self.seq)

    @property
    def path(self) -> str:
        return f"{MANIFESTS}/{self.lineage}/{self.seq:08d}.json"

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "lineage": self.lineage,
                    "seq": self.seq,
                    "machine": self.machine,
                    "time": self.time,
                    "kind": self.kind,
                    "files": {
                        p: [e.size, e.mtime_ns, e.gen] for p, e in sorted(self.files.items())
                    },
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Manifest:
        return cls(
            lineage=str(obj["lineage"]),
            seq=int(obj["seq"]),
            machine=str(obj["machine"]),
            time=float(obj["time"]),
            kind=str(obj["kind"]),
            files={p: Entry(int(v[0]), int(v[1]), str(v[2])) for p, v in obj["files"].items()},
        )


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
    say: Callable[[str], object] = log.warning  # a note for the user (the agent: the task log)
    links_said: list[str] = field(default_factory=list)

    def checkpoint(self, kind: str) -> Manifest | None:
        """Take a generation of what changed; None when nothing did."""
        inodes: dict[str, int] = {}
        links: list[str] = []
        now = scan(self.workdir, self.exclude, inodes, links)
        if links and sorted(links) != self.links_said:
            self.links_said = sorted(links)
            shown = ", ".join(self.links_said[:5]) + (" ..." if len(links) > 5 else "")
            self.say(f"symbolic links are not checkpointed ({LINKS}): {shown}")
        prev = self.current.files if self.current else {}
        changed = sorted(p for p, st in now.items() if self.local.get(p) != st or p not in prev)
        removed = [p for p in prev if p not in now]
        if not changed and not removed and not self._promotes(kind):
            return None
        seq = self.current.seq + 1 if self.current and self.current.lineage == self.lineage else 1
        gen = gen_id(self.lineage, seq)
        remote = self.rclone.remote
        landed = self._upload(changed, now, inodes, remote.path(BODIES, gen))
        files: dict[str, Entry] = {}
        local: dict[str, Stat] = {}
        torn: list[str] = []
        for p, st in now.items():
            if p not in changed:
                files[p], local[p] = prev[p], st
            elif p in landed:
                st = landed[p]
                files[p], local[p] = Entry(st[0], st[1], gen), st
            else:
                torn.append(p)
                if p in prev:  # keep the last complete version in this generation
                    files[p], local[p] = prev[p], self.local.get(p, (-1, -1))
        manifest = Manifest(self.lineage, seq, self.machine, time.time(), kind, files)
        self.rclone.write(remote.path(manifest.path), manifest.to_json())
        old, self.current, self.local = self.current, manifest, local
        if torn:
            log.info(
                "generation %s left out %d file(s) that changed while uploading", gen, len(torn)
            )
        self._collect_garbage(old, manifest, torn)
        return manifest

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

    def _collect_garbage(self, old: Manifest | None, new: Manifest, torn: list[str]) -> None:
        """Remove bodies and manifests only the older generations of this lineage used."""
        garbage = [f"gen/{new.gen}/{p}" for p in torn]
        if old is not None:
            live = {(e.gen, p) for p, e in new.files.items()}
            garbage += [
                f"gen/{e.gen}/{p}"
                for p, e in old.files.items()
                if (e.gen, p) not in live and e.gen.startswith(self.lineage + "/")
            ]
            if old.lineage == self.lineage:
                garbage.append(old.path.removeprefix(DATA + "/"))
        try:
            self.rclone.delete_files(self.rclone.remote.path(DATA), garbage)
        except Exception as exc:  # garbage left behind costs storage, never correctness
            log.warning("could not clean up old generations: %s", exc)

    def adopt(self, manifest: Manifest, local: dict[str, Stat]) -> None:
        """Continue from a restored generation (its own lineage or the base)."""
        self.current, self.local = manifest, local


def manifests(rclone: Rclone, lineages: Iterable[str] | None = None) -> list[Manifest]:
    """The newest landed manifest of each lineage (all lineages when None), in one listing
    and one read."""
    wanted = set(lineages) if lineages is not None else None
    newest: dict[str, str] = {}
    for item in rclone.list(rclone.remote.path(MANIFESTS), recursive=True):
        path = item["Path"]
        lineage, _, name = path.rpartition("/")
        if not name.endswith(".json") or (wanted is not None and lineage not in wanted):
            continue
        if path > newest.get(lineage, ""):
            newest[lineage] = path
    blob = rclone.cat_many(rclone.remote.path(MANIFESTS), sorted(newest.values()))
    out = []
    for obj in read_json_objects(blob):
        try:
            out.append(Manifest.from_obj(obj))
        except (KeyError, TypeError, ValueError):
            continue
    return out


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
    """Copy exactly the manifest's files (or the given subset) into dest; return local stats."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    chosen = manifest.files if paths is None else {p: manifest.files[p] for p in paths}
    by_gen: dict[str, list[str]] = defaultdict(list)
    for p, e in chosen.items():
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

    # One rclone per generation that holds bodies; generations run side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fetch, sorted(by_gen)))
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

    A generation is whole when its manifest parses and every body it lists is there. A
    damaged one (a manifest cut short, a body removed) is passed over, and the next
    older one tried, down to the upload from create: a damaged bucket costs progress,
    never the boot. `dest` must be empty: it is emptied again between tries.
    """
    dest = Path(dest)
    passed_over: list[str] = []
    broken: list[str] = []
    for source in (lineage, BASE):
        listed = rclone.list(rclone.remote.path(MANIFESTS, source))
        paths = sorted((e["Path"] for e in listed if e["Path"].endswith(".json")), reverse=True)
        for name in paths:
            path = f"{MANIFESTS}/{source}/{name}"
            try:
                manifest = Manifest.from_obj(json.loads(rclone.cat(rclone.remote.path(path))))
                local = restore(rclone, manifest, dest)
                return Restored(manifest, local, tuple(passed_over), tuple(broken))
            except (NotFound, ValueError, KeyError, TypeError) as exc:
                log.warning("generation %s/%s cannot be restored: %s", source, name, exc)
                passed_over.append(f"{source}/{name.removesuffix('.json')}: {exc}")
                broken.append(path.removeprefix(DATA + "/"))
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True, exist_ok=True)
    return Restored(None, {}, tuple(passed_over), tuple(broken))


def remove_orphans(rclone: Rclone, lineage: str, restored: Restored) -> int:
    """At boot: remove the bodies of `lineage` that the restored generation does not use
    (those of a generation whose manifest never landed, or of a damaged one), and the
    damaged manifests. Only this index's machine writes its lineage, and it has not
    started checkpointing yet. Returns how many objects went."""
    live = set()
    if restored.manifest is not None:
        live = {f"{e.gen}/{p}" for p, e in restored.manifest.files.items()}
    prefix = f"{lineage}/"
    garbage = [
        f"gen/{lineage}/{e['Path']}"
        for e in rclone.list(rclone.remote.path(BODIES, lineage), recursive=True)
        if not e.get("IsDir") and prefix + e["Path"] not in live
    ]
    garbage += [p for p in restored.broken if p.startswith(f"manifests/{lineage}/")]
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
    """The workdir as the task starts: generation base/00000000 (empty: no workdir)."""
    if not empty and not Path(workdir).is_dir():
        raise NotFound(f"storage.workdir {workdir} is not a folder (anymore?); create it")
    # Bodies and manifest are two rclone calls: one daemon for both costs one rclone
    # start instead of two (unless the transfer shows progress on a terminal). It
    # comes up while the workdir is walked, and the manifest is made while the
    # bodies upload; it is still written only after they all landed.
    own_daemon = not empty and not show_progress and rclone.daemon is None
    if own_daemon:
        rclone.start_daemon()
    try:
        links: list[str] = []
        now = {} if empty else scan(workdir, exclude, links=links)
        if links:
            raise links_refused(links)
        gen = gen_id(BASE, 0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            bodies = pool.submit(
                rclone.copy_files,
                str(workdir),
                rclone.remote.path(BODIES, gen),
                sorted(now),
                show_progress=show_progress,
            )
            files = {p: Entry(st[0], st[1], gen) for p, st in now.items()}
            manifest = Manifest(BASE, 0, "workstation", time.time(), "base", files)
            body = manifest.to_json()
            bodies.result()
        rclone.write(rclone.remote.path(manifest.path), body)
    finally:
        if own_daemon:
            rclone.stop_daemon()
    return manifest
