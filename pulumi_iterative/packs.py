"""Packs: many small files of one generation in a few objects.

A bucket charges per request, and a workdir of ML data is often tens of
thousands of small files. Files smaller than SMALL_FILE are written, a
generation at a time, into packs of up to PACK_SIZE: plain uncompressed tar
files, named by the SHA-256 of their bytes, at

    data/packs/<lineage>/<seq>/<sha256>.tar

A pack is read by hand with `rclone cat <remote>/data/packs/.../<sha>.tar | tar x`
(members are workdir-relative paths; tar keeps whole-second mtimes, the manifest
the exact ones). The manifest says which pack holds each file, so a restore
fetches only the packs its generation uses, streams each one, checks its hash
against its name (a torn or swapped pack is an error, never a silent restore) and
writes only the members its manifest lists.

The torn-file rule, for packed files: a file is read whole through one open
descriptor and its size and mtime are taken before and after; if they differ it
was written meanwhile and is left out of the pack (the generation keeps its
previous version).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import TransferError
from .storage import DATA

PACKS = f"{DATA}/packs"
SMALL_FILE = 1024 * 1024  # files below this size go into packs
PACK_SIZE = 16 * 1024 * 1024  # a pack is closed once it holds this much

Stat = tuple[int, int]  # (size, mtime_ns)


def pack_key(gen: str, digest: str) -> str:
    """A pack's path below data/."""
    return f"packs/{gen}/{digest}.tar"


@dataclass(frozen=True)
class Pack:
    digest: str  # sha256 of body: the pack's name
    body: bytes
    files: dict[str, Stat]  # what it holds, with the stats read under the torn-file rule


def read_whole(path: str) -> tuple[bytes, Stat] | None:
    """A regular file's bytes and stats, or None if it changed while read or is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (FileNotFoundError, OSError):
        return None
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        data = fh.read()
        after = os.fstat(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(
        data
    ) != after.st_size:
        return None
    return data, (after.st_size, after.st_mtime_ns)


def build(root: str | Path, paths: Iterable[str]) -> Iterator[Pack]:
    """Packs of the given files, each closed at PACK_SIZE; files torn while read are left out."""
    base = str(root)
    batch: list[tuple[str, bytes, Stat]] = []
    size = 0
    for rel in paths:
        got = read_whole(os.path.join(base, rel))
        if got is None:
            continue
        data, st = got
        batch.append((rel, data, st))
        size += len(data) + 1024  # a header and padding
        if size >= PACK_SIZE:
            yield _pack(batch)
            batch, size = [], 0
    if batch:
        yield _pack(batch)


def _pack(batch: list[tuple[str, bytes, Stat]]) -> Pack:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, data, st in batch:
            info = tarfile.TarInfo(rel)
            info.size = st[0]
            info.mtime = st[1] // 1_000_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    return Pack(hashlib.sha256(body).hexdigest(), body, {rel: st for rel, _, st in batch})


class _Hashing(io.RawIOBase):
    """Reads through to a stream, hashing every byte on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while self.raw.read(1 << 20):
            pass


def unpack(
    stream: BinaryIO,
    digest: str,
    wanted: dict[str, tuple[int, int]],
    dest: str | Path,
) -> set[str]:
    """Write the wanted members (path -> (size, mtime_ns)) of one pack into dest.

    Returns the paths written. Raises TransferError when the pack's bytes do not
    hash to its name (torn, truncated or swapped) or a member's size is not the
    manifest's.
    """
    hashing = _Hashing(stream)
    reader = io.BufferedReader(hashing, buffer_size=1 << 20)
    written: set[str] = set()
    root = str(dest)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                want = wanted.get(member.name)
                if want is None or not member.isfile():
                    continue
                if member.size != want[0]:
                    raise TransferError(
                        f"pack {digest[:12]}: {member.name} has {member.size} bytes, "
                        f"the manifest says {want[0]}"
                    )
                src = tar.extractfile(member)
                assert src is not None
                target = os.path.join(root, member.name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.utime(target, ns=(want[1], want[1]))
                written.add(member.name)
        # The rest of the stream (tar's end blocks) counts toward the hash too.
        while reader.read(1 << 20):
            pass
    except tarfile.TarError as exc:
        raise TransferError(f"pack {digest[:12]} is torn or not a tar file: {exc}") from exc
    if hashing.sha.hexdigest() != digest:
        raise TransferError(
            f"pack {digest[:12]} is torn: its {hashing.size} bytes do not hash to its name"
        )
    missing = set(wanted) - written
    if missing:
        raise TransferError(f"pack {digest[:12]} lacks {len(missing)} file(s), e.g. {min(missing)}")
    return written
