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
PACK_SIZE = 4 * 1024 * 1024  # a pack is closed at this size: several stream side by side

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


BLOCK = 512


def _header(rel: str, size: int, mtime: int) -> bytes:
    """A ustar header, built directly (tarfile's costs ~0.2 ms a file); a name that does
    not fit ustar's 100 bytes, or is not ASCII, gets tarfile's own PAX header."""
    name = rel.encode("ascii") if rel.isascii() else b""
    if not name or len(name) > 100:
        info = tarfile.TarInfo(rel)
        info.size, info.mtime, info.mode = size, mtime, 0o644
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    head = bytearray(BLOCK)
    head[0 : len(name)] = name
    head[100:108] = b"0000644\0"
    head[108:116] = b"0000000\0"
    head[116:124] = b"0000000\0"
    head[124:136] = b"%011o\0" % size
    head[136:148] = b"%011o\0" % mtime
    head[148:156] = b"        "
    head[156] = ord("0")
    head[257:265] = b"ustar\x0000"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def _pack(batch: list[tuple[str, bytes, Stat]]) -> Pack:
    parts: list[bytes] = []
    for rel, data, st in batch:
        parts.append(_header(rel, st[0], st[1] // 1_000_000_000))
        parts.append(data)
        pad = -len(data) % BLOCK
        if pad:
            parts.append(bytes(pad))
    parts.append(bytes(2 * BLOCK))
    body = b"".join(parts)
    return Pack(hashlib.sha256(body).hexdigest(), body, {rel: st for rel, _, st in batch})


class _Reader:
    """Reads a stream exactly, hashing every byte."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            data = self.raw.read(n)
            if not data:
                break
            chunks.append(data)
            n -= len(data)
        out = b"".join(chunks)
        self.sha.update(out)
        self.size += len(out)
        return out

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _octal(field: bytes) -> int:
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _members(reader: _Reader, digest: str) -> Iterator[tuple[str, int, bytes]]:
    """(name, size, typeflag) of each member, the reader left at its data."""
    pax_name: str | None = None
    pax_size: int | None = None
    while True:
        head = reader.read(BLOCK)
        if len(head) < BLOCK:
            raise TransferError(f"pack {digest[:12]} is torn: it ends inside a header")
        if head == bytes(BLOCK):
            return
        if sum(head[:148]) + 8 * 32 + sum(head[156:]) != _octal(head[148:156]):
            raise TransferError(f"pack {digest[:12]} is torn: a header's checksum is wrong")
        size = _octal(head[124:136])
        kind = head[156:157]
        name = head[0:100].split(b"\0", 1)[0]
        prefix = head[345:500].split(b"\0", 1)[0]
        path = (prefix + b"/" + name if prefix else name).decode("utf-8", "surrogateescape")
        if kind in (b"x", b"g"):  # PAX records: a long or non-ASCII name
            data = reader.read(size + (-size % BLOCK))[:size]
            if kind == b"x":
                for record in data.split(b"\n"):
                    _, _, kv = record.partition(b" ")
                    key, _, value = kv.partition(b"=")
                    if key == b"path":
                        pax_name = value.decode("utf-8", "surrogateescape")
                    elif key == b"size":
                        pax_size = int(value)
            continue
        if pax_name is not None:
            path, pax_name = pax_name, None
        if pax_size is not None:
            size, pax_size = pax_size, None
        yield path, size, kind


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
    reader = _Reader(stream)
    written: set[str] = set()
    root = str(dest)
    for name, size, kind in _members(reader, digest):
        padded = size + (-size % BLOCK)
        want = wanted.get(name)
        if want is None or kind not in (b"0", b"\0"):
            left = padded
            while left > 0:
                got = len(reader.read(min(left, 1 << 20)))
                if not got:
                    raise TransferError(f"pack {digest[:12]} is torn: it ends inside {name}")
                left -= got
            continue
        if size != want[0]:
            raise TransferError(
                f"pack {digest[:12]}: {name} has {size} bytes, the manifest says {want[0]}"
            )
        data = reader.read(padded)
        if len(data) < padded:
            raise TransferError(f"pack {digest[:12]} is torn: it ends inside {name}")
        target = os.path.join(root, name)
        try:
            out = open(target, "wb")  # noqa: SIM115 - closed just below
        except FileNotFoundError:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            out = open(target, "wb")  # noqa: SIM115
        with out:
            out.write(memoryview(data)[:size])
        os.utime(target, ns=(want[1], want[1]))
        written.add(name)
    reader.drain()  # tar's end blocks count toward the hash too
    if reader.sha.hexdigest() != digest:
        raise TransferError(
            f"pack {digest[:12]} is torn: its {reader.size} bytes do not hash to its name"
        )
    missing = set(wanted) - written
    if missing:
        raise TransferError(f"pack {digest[:12]} lacks {len(missing)} file(s), e.g. {min(missing)}")
    return written
