"""Workdirs to measure with: many files of mixed sizes, or one big file.

Sizes follow a seeded log-normal spread (most files a few KB, a few of many
MB, like a project with code, configs, shards and checkpoints), scaled so the
tree holds the asked total. Files sit 100 to a folder, two levels deep. The
same seed gives the same tree, so ours and the baseline see identical bytes.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Tree:
    root: Path
    files: tuple[str, ...]  # relative paths
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.sizes)


def sizes_for(count: int, total: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.6) for _ in range(count)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[0] += total - sum(sizes)  # exact total
    if sizes[0] < 1:
        sizes[0] = 1
    return sizes


def _write(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(left, CHUNK)
            fh.write(os.urandom(n))
            left -= n


def make_tree(root: Path, count: int, total: int, seed: int = 1) -> Tree:
    root.mkdir(parents=True, exist_ok=True)
    sizes = sizes_for(count, total, seed)
    files = []
    for i, size in enumerate(sizes):
        rel = f"d{i // 1000:02d}/s{(i // 100) % 10:02d}/f{i:05d}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, size)
        files.append(rel)
    return Tree(root, tuple(files), tuple(sizes))


def make_uniform(root: Path, count: int, size: int) -> Tree:
    """count files of `size` bytes each, 100 to a folder (a dataset of small shards)."""
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        rel = f"d{i // 10_000:02d}/s{(i // 100) % 100:02d}/f{i:06d}.bin"
        path = root / rel
        if i % 100 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        files.append(rel)
    return Tree(root, tuple(files), (size,) * count)


def make_big(root: Path, size: int) -> Tree:
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "model.bin", size)
    return Tree(root, ("model.bin",), (size,))


def change_one(tree: Tree, round_: int) -> str:
    """Rewrite one small file (a new body of the same size, a new mtime)."""
    small = [f for f, s in zip(tree.files, tree.sizes, strict=True) if s < 64 * 1024]
    rel = (small or list(tree.files))[(round_ * 7919) % len(small or tree.files)]
    path = tree.root / rel
    size = path.stat().st_size
    _write(path, size)
    return rel


def append(tree: Tree, size: int) -> None:
    """Append to the one big file (a log or a growing checkpoint)."""
    with open(tree.root / tree.files[0], "ab") as fh:
        fh.write(os.urandom(size))
