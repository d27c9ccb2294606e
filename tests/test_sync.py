"""Generations against a real rclone and a local-folder bucket.

Each test plays the agent's part directly with `sync.Checkpointer`: a workdir on
disk, a bucket folder as the remote, and real rclone between them. What the
bucket holds is checked by looking at the folder itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pulumi_iterative import packs, sync
from pulumi_iterative.errors import IterativeError, NotFound, TransferError
from pulumi_iterative.storage import Rclone, Remote


@pytest.fixture
def rclone(tmp_path: Path) -> Rclone:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    return Rclone(Remote(str(bucket)))


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def put(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tree(root: Path) -> dict[str, str]:
    """Every file under root -> its text."""
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def objects(rclone: Rclone) -> set[str]:
    """Every object in the bucket's data/ folder, relative to data/, with each pack
    read as the bodies it holds: `packs/<gen>/<sha>.tar` counts as `gen/<gen>/<member>`
    for every member, so the tests check which bodies a generation stores however
    they are stored."""
    root = Path(rclone.remote.root) / "data"
    out = set()
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if rel.startswith("packs/"):
            gen = rel.removeprefix("packs/").rpartition("/")[0]
            with tarfile.open(p) as tar:
                out.update(f"gen/{gen}/{m}" for m in tar.getnames())
        else:
            out.add(rel)
    return out


@pytest.fixture(params=["packed", "whole"])
def stored(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a body is stored: small files in packs, or every file whole (as big
    files always are). Tests of the torn-file rule run against both."""
    if request.param == "whole":
        monkeypatch.setattr(packs, "SMALL_FILE", 0)
    return str(request.param)


def writes_while_read(real_fstat, workdir: Path, victims: set[str]):
    """os.fstat for the packer, which appends to a victim between the two stats it takes
    around reading it: the script writing on while its file goes into a pack."""
    prefix = str(workdir) + "/"

    def fstat(fd):
        st = real_fstat(fd)
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return st
        rel = name.removeprefix(prefix)
        if name.startswith(prefix) and rel in victims:
            victims.discard(rel)
            with open(name, "a") as fh:
                fh.write(" more")
        return st

    return fstat


def stored_keys(rclone: Rclone) -> set[str]:
    """Every object in the bucket's data/ folder as it is stored (packs as packs)."""
    root = Path(rclone.remote.root) / "data"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def kept_manifests(manifest: sync.Manifest, lineage: str) -> set[str]:
    """The manifests of a lineage its newest generation needs: itself, and the whole
    manifest it is a delta of (when that is in the same lineage)."""
    keep = {manifest.path.removeprefix("data/")}
    if manifest.parent.startswith(lineage + "/"):
        parent_lineage, _, seq = manifest.parent.rpartition("/")
        keep.add(sync.manifest_path(parent_lineage, int(seq)))
    return {k.removeprefix("data/") for k in keep}


def start(rclone: Rclone, wd: Path, exclude: tuple[str, ...] = (), index: int = 0):
    """Upload the base, then a machine's checkpointer continuing from it (as the agent does)."""
    base = sync.upload_base(rclone, wd, exclude)
    cp = sync.Checkpointer(rclone, wd, sync.lineage_of(index), f"{index}-test", exclude)
    cp.adopt(base, sync.scan(wd, exclude))
    return cp


def boot(rclone: Rclone, dest: Path, index: int = 0, exclude: tuple[str, ...] = ()):
    """A replacement machine: restore the newest manifest of its index, else the base."""
    manifest = sync.latest(rclone, sync.lineage_of(index)) or sync.latest(rclone, sync.BASE)
    assert manifest is not None
    local = sync.restore(rclone, manifest, dest)
    cp = sync.Checkpointer(rclone, dest, sync.lineage_of(index), f"{index}-next", exclude)
    cp.adopt(manifest, local)
    return cp, manifest


def test_generations_restore_exactly_their_set(rclone: Rclone, wd: Path, tmp_path: Path) -> None:
    put(wd, "a.txt", "a0")
    put(wd, "sub/b.txt", "b0")
    cp = start(rclone, wd)

    put(wd, "a.txt", "a1")
    put(wd, "sub/c.txt", "c1")
    m1 = cp.checkpoint("auto")
    assert m1 is not None and (m1.lineage, m1.seq, m1.kind) == ("i0", 1, "auto")
    assert {p: e.gen for p, e in m1.files.items()} == {
        "a.txt": "i0/00000001",
        "sub/b.txt": "base/00000000",
        "sub/c.txt": "i0/00000001",
    }
    assert m1.files["a.txt"].size == 2

    put(wd, "a.txt", "a2")
    m2 = cp.checkpoint("explicit")
    assert m2 is not None and m2.seq == 2
    assert sync.latest(rclone, "i0") == m2

    dest = tmp_path / "restored"
    _, found = boot(rclone, dest)
    assert found.gen == "i0/00000002"
    assert tree(dest) == {"a.txt": "a2", "sub/b.txt": "b0", "sub/c.txt": "c1"}


def test_only_changed_files_are_uploaded(rclone: Rclone, wd: Path, tmp_path: Path) -> None:
    for i in range(30):
        put(wd, f"d/f{i:02d}.txt", f"v0 {i}")
    cp = start(rclone, wd)
    put(wd, "d/f07.txt", "v1 changed")
    calls = rclone.calls
    m = cp.checkpoint("auto")
    assert m is not None
    # One copy of the changed bodies, one manifest write, one garbage delete: no listing.
    assert rclone.calls - calls <= 3
    assert sorted(o for o in objects(rclone) if o.startswith("gen/i0/")) == [
        "gen/i0/00000001/d/f07.txt"
    ]

    calls = rclone.calls
    assert cp.checkpoint("auto") is None  # nothing changed: no generation, no request
    assert rclone.calls == calls

    # A replacement machine restores with the bucket's mtimes, so it too sees no change.
    cp2, _ = boot(rclone, tmp_path / "next")
    calls = rclone.calls
    assert cp2.checkpoint("auto") is None
    assert rclone.calls == calls
    put(tmp_path / "next", "d/f20.txt", "v2")
    m2 = cp2.checkpoint("auto")
    assert m2 is not None and m2.seq == 2
    assert [p for p, e in m2.files.items() if e.gen == m2.gen] == ["d/f20.txt"]


def test_a_consistency_point_over_an_unchanged_auto_generation_is_its_own(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    """A background checkpoint took the set just before the script asked: the ask still
    gets a generation of kind `explicit` (manifest only, no body uploaded), so a
    replacement restores it as a consistency point."""
    put(wd, "a.txt", "a")
    cp = start(rclone, wd)
    put(wd, "a.txt", "a, epoch 1")
    auto = cp.checkpoint("auto")
    assert auto is not None and auto.kind == "auto"
    bodies = sorted(o for o in objects(rclone) if o.startswith("gen/"))
    point = cp.checkpoint("explicit")
    assert point is not None and (point.seq, point.kind) == (auto.seq + 1, "explicit")
    assert point.files == auto.files  # the same bodies, named by the new manifest
    assert sync.latest(rclone, "i0") == point
    assert cp.checkpoint("explicit") is None  # asked again with nothing new: nothing to do
    _, restored = boot(rclone, tmp_path / "next")
    assert restored.kind == "explicit"
    assert set(bodies) <= set(objects(rclone))  # the bodies the point names are kept


def test_deleted_files_disappear_and_stay_deleted(rclone: Rclone, wd: Path, tmp_path: Path) -> None:
    put(wd, "keep.txt", "k")
    put(wd, "from-base.txt", "b")
    cp = start(rclone, wd)
    put(wd, "made-here.txt", "m")
    cp.checkpoint("auto")
    (wd / "from-base.txt").unlink()
    (wd / "made-here.txt").unlink()
    m = cp.checkpoint("auto")
    assert m is not None and sorted(m.files) == ["keep.txt"]
    # The body this lineage made for the deleted file is gone; the base's stays (other
    # indexes may still start from it).
    assert "gen/i0/00000001/made-here.txt" not in objects(rclone)
    assert "gen/base/00000000/from-base.txt" in objects(rclone)

    dest = tmp_path / "next"
    cp2, _ = boot(rclone, dest)
    assert tree(dest) == {"keep.txt": "k"}
    # And they stay deleted through the next generation of the replacement.
    put(dest, "keep.txt", "k2")
    m2 = cp2.checkpoint("auto")
    assert m2 is not None and sorted(m2.files) == ["keep.txt"]
    third = tmp_path / "third"
    boot(rclone, third)
    assert tree(third) == {"keep.txt": "k2"}


def test_file_changed_during_upload_is_left_out(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    put(wd, "model.pt", "model v0")
    cp = start(rclone, wd)
    put(wd, "model.pt", "model v1")
    put(wd, "new.log", "line 1\n")
    put(wd, "steady.txt", "steady")
    real_copy = Rclone.copy_files

    def copy_then_touch(self, src, dst, files, **kw):
        real_copy(self, src, dst, files, **kw)
        if src == str(wd):  # an upload: the script writes on while it ran
            with open(wd / "model.pt", "a") as fh:
                fh.write(" and more")
            with open(wd / "new.log", "a") as fh:
                fh.write("line 2\n")

    monkeypatch.setattr(Rclone, "copy_files", copy_then_touch)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", writes_while_read(real_fstat, wd, {"model.pt", "new.log"}))
    m = cp.checkpoint("auto")
    monkeypatch.setattr(Rclone, "copy_files", real_copy)
    monkeypatch.setattr(os, "fstat", real_fstat)
    if stored == "packed":  # the packer appended on its own: the same text as copy_then_touch
        with open(wd / "new.log") as fh:
            assert fh.read() == "line 1\n more"
        put(wd, "new.log", "line 1\nline 2\n")
        put(wd, "model.pt", "model v1 and more")
    assert m is not None
    # The changed file keeps its last complete version; the new one waits for the next.
    assert m.files["model.pt"].gen == "base/00000000"
    assert "new.log" not in m.files
    assert m.files["steady.txt"].gen == m.gen
    # Its torn bodies are not left in the generation.
    assert not any(o.endswith(("/model.pt", "/new.log")) for o in objects(rclone) if "i0/" in o)
    dest = tmp_path / "r1"
    boot(rclone, dest)
    assert tree(dest) == {"model.pt": "model v0", "steady.txt": "steady"}

    # The next checkpoint takes both, as they are now.
    m2 = cp.checkpoint("auto")
    assert m2 is not None
    assert m2.files["model.pt"].gen == m2.gen and m2.files["new.log"].gen == m2.gen
    dest = tmp_path / "r2"
    boot(rclone, dest)
    assert tree(dest) == {
        "model.pt": "model v1 and more",
        "new.log": "line 1\nline 2\n",
        "steady.txt": "steady",
    }


def test_a_busy_writer_lands_only_the_version_its_manifest_describes(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    """A thread rewrites a file in pieces while checkpoints run. Whatever lands is the
    exact version the manifest recorded (its size and mtime held through the upload);
    a version written over while uploading is left out."""
    put(wd, "other.txt", "x")
    cp = start(rclone, wd)
    stop = threading.Event()

    def writer() -> None:
        v = 0
        while not stop.is_set():
            v += 1
            with open(wd / "log.bin", "w") as fh:
                fh.write(f"begin {v}\n")
                for _ in range(20):
                    fh.write(f"{v} " * 50 + "\n")
                    fh.flush()
                    time.sleep(0.005)
                fh.write(f"end {v}\n")
            time.sleep(0.2)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    landed = []
    taken = 0
    deadline = time.monotonic() + 20
    try:
        while taken < 15 and time.monotonic() < deadline:
            m = cp.checkpoint("auto")
            if m is None:
                time.sleep(0.02)
                continue
            taken += 1
            if m.files.get("log.bin") and m.files["log.bin"].gen == m.gen:
                dest = tmp_path / f"r{m.seq}"
                local = sync.restore(rclone, m, dest, ["log.bin"])
                landed.append((local["log.bin"], m.files["log.bin"]))
    finally:
        stop.set()
        thread.join()
    for (size, mtime_ns), entry in landed:
        assert (size, mtime_ns) == (entry.size, entry.mtime_ns), "a body that is not its version"
    # Once the writer is quiet, the next checkpoint takes the file as it is.
    m = cp.checkpoint("final")
    assert m is not None and m.files["log.bin"].gen == m.gen
    dest = tmp_path / "last"
    boot(rclone, dest)
    assert (dest / "log.bin").read_text() == (wd / "log.bin").read_text()


def test_a_manifest_that_never_landed_is_ignored(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(wd, "model.pt", "epoch 1")
    put(wd, "opt.pt", "epoch 1")
    cp = start(rclone, wd)
    m1 = cp.checkpoint("explicit")  # nothing changed since the base
    assert m1 is None
    put(wd, "model.pt", "epoch 2")
    put(wd, "opt.pt", "epoch 2")
    assert cp.checkpoint("explicit") is not None

    # Epoch 3: the bodies go up, then the manifest write fails (the machine died there).
    put(wd, "model.pt", "epoch 3")
    put(wd, "opt.pt", "epoch 3")
    put(wd, "extra.bin", "only in the lost generation")
    real_write = Rclone.write

    def failing_write(self, path, data):
        if "/manifests/" in path:
            raise TransferError("rclone rcat failed: connection reset")
        return real_write(self, path, data)

    monkeypatch.setattr(Rclone, "write", failing_write)
    with pytest.raises(TransferError):
        cp.checkpoint("explicit")
    monkeypatch.setattr(Rclone, "write", real_write)
    assert "gen/i0/00000002/model.pt" in objects(rclone)  # the bodies did land

    # A replacement restores epoch 2, and nothing of the lost generation.
    dest = tmp_path / "next"
    cp2, found = boot(rclone, dest)
    assert found.seq == 1
    assert tree(dest) == {"model.pt": "epoch 2", "opt.pt": "epoch 2"}

    # It goes on (reusing the lost generation's number) and its manifest is the truth.
    put(dest, "model.pt", "epoch 4")
    put(dest, "opt.pt", "epoch 4")
    m = cp2.checkpoint("explicit")
    assert m is not None and m.seq == 2 and "extra.bin" not in m.files
    third = tmp_path / "third"
    boot(rclone, third)
    assert tree(third) == {"model.pt": "epoch 4", "opt.pt": "epoch 4"}


def test_a_failed_manifest_write_is_retried_whole(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same machine retries after a failed manifest write: nothing is lost or mixed."""
    put(wd, "a.txt", "a0")
    cp = start(rclone, wd)
    put(wd, "a.txt", "a1")
    real_write = Rclone.write

    def failing_write(self, path, data):
        raise TransferError("rclone rcat failed: 503")

    monkeypatch.setattr(Rclone, "write", failing_write)
    with pytest.raises(TransferError):
        cp.checkpoint("auto")
    monkeypatch.setattr(Rclone, "write", real_write)
    m = cp.checkpoint("auto")
    assert m is not None and m.seq == 1 and m.files["a.txt"].gen == m.gen
    dest = tmp_path / "r"
    boot(rclone, dest)
    assert tree(dest) == {"a.txt": "a1"}


def test_garbage_collection_keeps_only_the_newest_generation(
    rclone: Rclone, wd: Path, tmp_path: Path, stored: str
) -> None:
    put(wd, "base-only.txt", "b")
    put(wd, "model.pt", "m0")
    cp = start(rclone, wd)
    for step in range(1, 6):
        put(wd, "model.pt", f"m{step}")
        put(wd, f"log-{step}.txt", f"step {step}")
        if step > 1:
            (wd / f"log-{step - 1}.txt").unlink()
        if step == 3:
            put(wd, "kept-from-3.txt", "3")
        cp.checkpoint("auto")
    assert cp.current is not None and cp.current.seq == 5
    # A pack lives while any file in it does: generation 3's holds kept-from-3.txt.
    kept_with_3 = {"gen/i0/00000003/model.pt", "gen/i0/00000003/log-3.txt"}
    assert objects(rclone) == {
        "manifests/base/00000000.json",
        "manifests/i0/00000005.delta.json",  # the changes since the base: small
        "gen/base/00000000/base-only.txt",
        "gen/base/00000000/model.pt",
        "gen/i0/00000003/kept-from-3.txt",
        "gen/i0/00000005/model.pt",
        "gen/i0/00000005/log-5.txt",
    } | (kept_with_3 if stored == "packed" else set())
    # A replacement continues and collects behind itself too.
    dest = tmp_path / "next"
    cp2, _ = boot(rclone, dest)
    (dest / "kept-from-3.txt").unlink()
    put(dest, "model.pt", "m6")
    cp2.checkpoint("auto")
    assert objects(rclone) == {
        "manifests/base/00000000.json",
        "manifests/i0/00000006.delta.json",
        "gen/base/00000000/base-only.txt",
        "gen/base/00000000/model.pt",
        "gen/i0/00000005/log-5.txt",
        "gen/i0/00000006/model.pt",
    } | ({"gen/i0/00000005/model.pt"} if stored == "packed" else set())


def test_garbage_collection_failure_costs_storage_not_correctness(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(wd, "a.txt", "a0")
    cp = start(rclone, wd)

    def failing_delete(self, directory, files):
        raise TransferError("rclone delete failed")

    monkeypatch.setattr(Rclone, "delete_files", failing_delete)
    for step in (1, 2):
        put(wd, "a.txt", f"a{step}")
        assert cp.checkpoint("auto") is not None
    assert {"manifests/i0/00000001.delta.json", "manifests/i0/00000002.delta.json"} <= objects(
        rclone
    )
    dest = tmp_path / "r"
    _, found = boot(rclone, dest)
    assert found.seq == 2 and tree(dest) == {"a.txt": "a2"}


# --- exclude: rclone's own filter semantics --------------------------------------------

PATHS = [
    "train.py",
    "a.tmp",
    "d/a.tmp",
    "d/e/a.tmp",
    "top.log",
    "d/top.log",
    "cache/x.bin",
    "d/cache/y.bin",
    "cachefile",
    "a.txt",
    "b.txt",
    "c.txt",
    "d/a.txt",
    "ckpt/model.pt",
    "ckpt/deep/opt.pt",
    "x.c",
    "y.c",
    "!.c",
    "logs/run.log",
    "logs/old/run.log",
    "img/c.jpg",
    "img/d.png",
    "Makefile",
]
PATTERNS = [
    "*.tmp",
    "/top.log",
    "top.log",
    "cache/",
    "/cache/",
    "{a,b}.txt",
    "[ab].txt",
    "[!a].c",
    "ckpt/**",
    "ckpt/*",
    "d/*.txt",
    "**/a.tmp",
    "?.c",
    "[^a].c",
    "\\!.c",
    "logs/*",
    "*",
    "*.{jpg,png}",
    "{*.tmp,*.log}",
    "{{.*\\.t[a-z]+}}",
    "{{^[A-Z]}}*",
    "d/**/a.tmp",
    "/d/",
]


@pytest.fixture(scope="module")
def pattern_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("patterns")
    for p in PATHS:
        put(root, p, p)
    return root


@pytest.mark.parametrize("pattern", PATTERNS)
def test_exclude_matches_rclone(pattern: str, pattern_tree: Path, rclone: Rclone) -> None:
    """scan() leaves out exactly what `rclone --exclude` leaves out."""
    out = subprocess.run(
        [rclone.binary, "lsf", "-R", "--files-only", "--exclude", pattern, str(pattern_tree)],
        capture_output=True,
        text=True,
        check=True,
        env=rclone.env,
    ).stdout
    assert set(sync.scan(pattern_tree, [pattern])) == set(out.split())


def test_a_glob_rclone_refuses_is_matched_literally(tmp_path: Path) -> None:
    """A typo in exclude must not stop checkpoints nor hide files: it matches itself only."""
    put(tmp_path, "{draft", "x")
    put(tmp_path, "a.txt", "a")
    put(tmp_path, "d/***", "y")
    assert sorted(sync.scan(tmp_path, ["{draft", "***", "x]"])) == ["a.txt"]


def test_excluded_files_are_never_uploaded(rclone: Rclone, wd: Path, tmp_path: Path) -> None:
    exclude = ("*.tmp", "cache/", "/secret.env")
    put(wd, "train.py", "code")
    put(wd, "scratch.tmp", "t")
    put(wd, "cache/blob", "c")
    put(wd, "secret.env", "s")
    put(wd, "sub/secret.env", "fine: not at the root")
    cp = start(rclone, wd, exclude)
    put(wd, "run/out.tmp", "t")
    put(wd, "run/cache/more", "c")
    put(wd, "run/result.txt", "r")
    m = cp.checkpoint("auto")
    assert m is not None
    assert sorted(m.files) == ["run/result.txt", "sub/secret.env", "train.py"]
    bodies = {o.split("/", 3)[3] for o in objects(rclone) if o.startswith("gen/")}
    assert bodies == {"run/result.txt", "sub/secret.env", "train.py"}
    dest = tmp_path / "next"
    boot(rclone, dest, exclude=exclude)
    assert sorted(tree(dest)) == ["run/result.txt", "sub/secret.env", "train.py"]


# --- parallel machines --------------------------------------------------------------------


def test_lineages_are_per_index_and_pull_merges_the_newest(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    put(wd, "data.csv", "1,2,3")
    put(wd, "results/stale.txt", "from the workstation")
    base = sync.upload_base(rclone, wd, ())
    machines = []
    for index in (0, 1):
        dest = tmp_path / f"m{index}"
        cp, found = boot(rclone, dest, index)
        assert found == base  # nothing of its own yet: it starts from the base
        machines.append((cp, dest))

    (cp0, d0), (cp1, d1) = machines
    put(d0, "results/part-0.txt", "zero")
    put(d0, "results/shared.txt", "from 0")
    (d0 / "results/stale.txt").unlink()
    cp0.checkpoint("auto")
    time.sleep(0.01)  # distinct mtimes on coarse clocks
    put(d1, "results/part-1.txt", "one")
    put(d1, "results/shared.txt", "from 1, later")
    (d1 / "results/stale.txt").unlink()
    cp1.checkpoint("auto")

    # Each index restores its own lineage only.
    r0 = tmp_path / "r0"
    boot(rclone, r0, 0)
    assert tree(r0) == {
        "data.csv": "1,2,3",
        "results/part-0.txt": "zero",
        "results/shared.txt": "from 0",
    }

    # pull: for each path the newest version across lineages; what every lineage
    # deleted stays deleted.
    out = tmp_path / "pulled"
    assert sync.pull(rclone, out, "results") == 3
    assert tree(out) == {
        "results/part-0.txt": "zero",
        "results/part-1.txt": "one",
        "results/shared.txt": "from 1, later",
    }
    everything = tmp_path / "all"
    sync.pull(rclone, everything, "")
    assert sorted(tree(everything)) == [
        "data.csv",
        "results/part-0.txt",
        "results/part-1.txt",
        "results/shared.txt",
    ]


def test_pull_while_a_machine_checkpoints_gets_a_whole_view(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pull reads the manifests, then the machine lands a newer generation and collects
    the bodies pull was about to copy: pull reads again instead of failing."""
    put(wd, "results/model.pt", "m0")
    cp = start(rclone, wd)
    put(wd, "results/model.pt", "m1")
    cp.checkpoint("auto")
    real = sync.manifests
    raced = []

    def manifests_then_checkpoint(*args, **kw):
        found = real(*args, **kw)
        if not raced:
            raced.append(1)
            put(wd, "results/model.pt", "m2, longer")
            cp.checkpoint("auto")  # removes gen i0/1's body of model.pt
        return found

    monkeypatch.setattr(sync, "manifests", manifests_then_checkpoint)
    out = tmp_path / "pulled"
    assert sync.pull(rclone, out, "results") == 1
    assert raced and tree(out) == {"results/model.pt": "m2, longer"}


def test_pull_before_any_machine_checkpointed_gives_the_base(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    put(wd, "results/seed.txt", "s")
    sync.upload_base(rclone, wd, ())
    out = tmp_path / "pulled"
    assert sync.pull(rclone, out, "results") == 1
    assert tree(out) == {"results/seed.txt": "s"}


def test_restore_keeps_mtimes(rclone: Rclone, wd: Path, tmp_path: Path) -> None:
    put(wd, "a.txt", "a")
    os.utime(wd / "a.txt", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    cp = start(rclone, wd)
    put(wd, "b.txt", "b")
    m = cp.checkpoint("auto")
    assert m is not None
    local = sync.restore(rclone, m, tmp_path / "r")
    assert local == {p: (e.size, e.mtime_ns) for p, e in m.files.items()}


# --- a seeded walk through everything at once ------------------------------------------------


def tearing(real_copy, workdir: Path, victim: str | None):
    """copy_files during which the script writes on to `victim`: the body that goes up
    is not the version the scan saw."""

    def copy(self, src, dst, files, **kw):
        if src == str(workdir) and victim in files:
            with open(workdir / victim, "a") as fh:
                fh.write(" more")
        real_copy(self, src, dst, files, **kw)

    return copy


@pytest.mark.parametrize("seed", [1, 3])
def test_random_walk_restores_exactly_what_landed(
    rclone: Rclone,
    wd: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    stored: str,
) -> None:
    """Writes, deletes, checkpoints (some torn, some whose manifest fails), and reboots in
    a seeded order; after every step the newest manifest restores exactly the model."""
    import random

    rng = random.Random(seed)
    names = ["a.txt", "b.txt", "d/c.txt", "d/e/f.txt", "g.bin", "h.tmp"]
    exclude = ("*.tmp",)
    put(wd, "a.txt", "a-base")
    put(wd, "d/c.txt", "c-base")
    cp = start(rclone, wd, exclude)
    landed = {"a.txt": "a-base", "d/c.txt": "c-base"}  # what a restore must give
    failed: set[str] = set()  # bodies a failed attempt may have left
    real_copy, real_write = Rclone.copy_files, Rclone.write
    counter = 0

    def check(where: Path) -> None:
        manifest = sync.latest(rclone, "i0") or sync.latest(rclone, sync.BASE)
        assert manifest is not None
        dest = tmp_path / f"check{counter}"
        sync.restore(rclone, manifest, dest)
        assert tree(dest) == landed
        if manifest.lineage == "i0":
            live = {e.key(p) for p, e in manifest.files.items() if e.gen != "base/00000000"}
            bodies = {o for o in stored_keys(rclone) if o.startswith(("gen/i0/", "packs/i0/"))}
            assert live <= bodies and bodies - live <= failed
            assert {
                o for o in stored_keys(rclone) if o.startswith("manifests/i0/")
            } == kept_manifests(manifest, "i0")

    for _ in range(45):
        counter += 1
        op = rng.choice(
            ["write", "write", "write", "delete", "ckpt", "ckpt", "torn", "lost", "boot"]
        )
        if op == "write":
            name = rng.choice(names)
            put(wd, name, f"{name} v{counter} " + "x" * rng.randrange(50))
        elif op == "delete":
            present = [n for n in names if (wd / n).exists()]
            if present:
                (wd / rng.choice(present)).unlink()
        elif op in ("ckpt", "torn"):
            before = {k: v for k, v in tree(wd).items() if not k.endswith(".tmp")}
            victim = rng.choice(sorted(before)) if before and op == "torn" else None
            monkeypatch.setattr(Rclone, "copy_files", tearing(real_copy, wd, victim))
            real_fstat = os.fstat
            victims = {victim} if victim else set()
            monkeypatch.setattr(os, "fstat", writes_while_read(real_fstat, wd, victims))
            m = cp.checkpoint("auto")
            monkeypatch.setattr(Rclone, "copy_files", real_copy)
            monkeypatch.setattr(os, "fstat", real_fstat)
            if m is not None:
                new = dict(before)
                if victim is not None and m.files.get(victim, sync.Entry(0, 0, "")).gen != m.gen:
                    if victim in landed:  # torn: the last complete version stays
                        new[victim] = landed[victim]
                    else:
                        del new[victim]
                landed = new
        elif op == "lost":
            monkeypatch.setattr(
                Rclone, "write", lambda self, path, data: (_ for _ in ()).throw(TransferError("x"))
            )
            seq = (cp.current.seq + 1) if cp.current and cp.current.lineage == "i0" else 1
            failed |= {f"gen/i0/{seq:08d}/{p}" for p in sync.scan(wd, exclude)}
            with contextlib.suppress(TransferError):
                cp.checkpoint("auto")
            monkeypatch.setattr(Rclone, "write", real_write)
        elif op == "boot":
            wd = tmp_path / f"boot{counter}"
            cp, _ = boot(rclone, wd, exclude=exclude)
            assert tree(wd) == landed
        if op not in ("write", "delete"):  # only these change the bucket
            check(wd)


# --- packs, deltas and inotify ----------------------------------------------------------


def test_a_watching_checkpointer_sees_every_kind_of_change(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    """With inotify: new folders (and files written into them at once), deletes, renames
    of files and folders, rewrites; every generation restores exactly the workdir."""
    put(wd, "a.txt", "a0")
    put(wd, "d/b.txt", "b0")
    put(wd, "d/e/c.txt", "c0")
    put(wd, "skip/x.txt", "x")
    cp = start(rclone, wd, exclude=("skip/",))
    assert cp.watch()
    put(wd, "new/deep/n.txt", "n0")  # a folder and its file, before any watch on it
    (wd / "a.txt").unlink()
    put(wd, "d/b.txt", "b1")
    put(wd, "skip/y.txt", "y")
    m = cp.checkpoint("auto")
    assert m is not None and m.parent == "base/00000000"  # a delta, not every file again
    dest = tmp_path / "r1"
    boot(rclone, dest, exclude=("skip/",))
    assert tree(dest) == {"d/b.txt": "b1", "d/e/c.txt": "c0", "new/deep/n.txt": "n0"}
    (wd / "d").rename(wd / "moved")
    (wd / "new" / "deep" / "n.txt").rename(wd / "n2.txt")
    put(wd, "moved/e/c2.txt", "c2")
    m = cp.checkpoint("auto")
    assert m is not None
    dest = tmp_path / "r2"
    boot(rclone, dest, exclude=("skip/",))
    want = {"moved/b.txt": "b1", "moved/e/c.txt": "c0", "moved/e/c2.txt": "c2", "n2.txt": "n0"}
    assert tree(dest) == want
    assert cp.checkpoint("auto") is None  # nothing changed since
    cp.close()


def test_a_full_manifest_follows_many_changes(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "DELTA_MIN", 2)
    for i in range(4):
        put(wd, f"f{i}.txt", "0")
    cp = start(rclone, wd)
    put(wd, "f0.txt", "1")
    m1 = cp.checkpoint("auto")
    assert m1 is not None and m1.parent == "base/00000000"
    for i in range(4):
        put(wd, f"f{i}.txt", "22")
    m2 = cp.checkpoint("auto")
    assert m2 is not None and not m2.parent  # too many changes for a delta: whole
    put(wd, "f1.txt", "333")
    m3 = cp.checkpoint("auto")
    assert m3 is not None and m3.parent == m2.gen
    assert {o for o in stored_keys(rclone) if o.startswith("manifests/i0/")} == {
        "manifests/i0/00000002.json",
        "manifests/i0/00000003.delta.json",
    }
    dest = tmp_path / "r"
    boot(rclone, dest)
    assert tree(dest) == {"f0.txt": "22", "f1.txt": "333", "f2.txt": "22", "f3.txt": "22"}


@pytest.mark.parametrize("daemon", [False, True], ids=["processes", "daemon"])
def test_a_torn_or_missing_pack_is_detected(
    rclone: Rclone, wd: Path, tmp_path: Path, daemon: bool
) -> None:
    """Through `rclone cat` and through the daemon's object stream alike."""
    if daemon:
        rclone.start_daemon()
    for i in range(5):
        put(wd, f"f{i}.txt", f"body {i}" * 20)
    base = sync.upload_base(rclone, wd, ())
    (pack,) = (Path(rclone.remote.root) / "data" / "packs").rglob("*.tar")
    body = pack.read_bytes()
    pack.write_bytes(body[: len(body) // 2])  # torn: cut short
    with pytest.raises(TransferError, match="torn"):
        sync.restore(rclone, base, tmp_path / "r1")
    pack.write_bytes(body.replace(b"body 3", b"BODY 3"))  # same length, other bytes
    with pytest.raises(TransferError, match="torn"):
        sync.restore(rclone, base, tmp_path / "r2")
    pack.unlink()
    with pytest.raises(NotFound):
        sync.restore(rclone, base, tmp_path / "r3")
    pack.write_bytes(body)
    assert sync.restore(rclone, base, tmp_path / "r4").keys() == base.files.keys()
    rclone.stop_daemon()


def test_long_and_unicode_names_round_trip_through_packs(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    long = "/".join(["a-rather-long-folder-name"] * 6) + "/données-été.txt"
    put(wd, long, "long")
    put(wd, "ünï/çødé.txt", "unicode")
    put(wd, "plain.txt", "plain")
    base = sync.upload_base(rclone, wd, ())
    assert all(e.pack for e in base.files.values())
    dest = tmp_path / "r"
    sync.restore(rclone, base, dest)
    assert tree(dest) == tree(wd)


def _three_generations(rclone: Rclone, wd: Path, monkeypatch: pytest.MonkeyPatch):
    """base, then i0/1 and i0/2, with garbage collection failing so i0/1 is still whole."""
    put(wd, "model.pt", "epoch 0")
    put(wd, "data.csv", "rows")
    cp = start(rclone, wd)
    monkeypatch.setattr(sync.Checkpointer, "_delete", lambda *a: None)
    put(wd, "model.pt", "epoch 1")
    first = cp.checkpoint("auto")
    put(wd, "model.pt", "epoch 2")
    put(wd, "new.txt", "only in 2")
    second = cp.checkpoint("auto")
    monkeypatch.undo()
    assert first is not None and second is not None
    return first, second


@pytest.mark.parametrize("damage", ["body missing", "manifest cut short"])
def test_a_damaged_newest_generation_falls_back_to_the_newest_whole_one(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    first, second = _three_generations(rclone, wd, monkeypatch)
    bucket = Path(rclone.remote.root) / "data"
    if damage == "body missing":
        (bucket / second.files["new.txt"].key("new.txt")).unlink()  # its body or its pack
    else:
        path = bucket / second.path.removeprefix("data/")
        path.write_bytes(path.read_bytes()[:40])
    dest = tmp_path / "next"
    dest.mkdir()
    found = sync.restore_newest_whole(rclone, "i0", dest)
    assert found.manifest is not None and found.manifest.gen == first.gen
    assert tree(dest) == {"model.pt": "epoch 1", "data.csv": "rows"}  # nothing of gen 2
    (why,) = found.passed_over
    assert why.startswith("i0/00000002")

    # The boot cleans up: gen 2's bodies and its manifest go, gen 1 and the base stay.
    assert sync.remove_orphans(rclone, "i0", found) >= 1
    left = objects(rclone)
    assert not any(o.startswith(f"gen/{second.gen}/") for o in left)
    assert second.path.removeprefix("data/") not in left
    assert f"gen/{first.gen}/model.pt" in left and "gen/base/00000000/data.csv" in left

    # It goes on from gen 1, and the next boot restores what it made.
    cp = sync.Checkpointer(rclone, dest, "i0", "0-next")
    cp.adopt(found.manifest, found.local)
    put(dest, "model.pt", "epoch 3")
    assert cp.checkpoint("auto") is not None
    third = tmp_path / "third"
    third.mkdir()
    again = sync.restore_newest_whole(rclone, "i0", third)
    assert again.passed_over == () and tree(third) == {"model.pt": "epoch 3", "data.csv": "rows"}


def test_with_every_generation_damaged_the_base_is_restored(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _three_generations(rclone, wd, monkeypatch)
    bucket = Path(rclone.remote.root) / "data"
    (bucket / first.files["model.pt"].key("model.pt")).unlink()  # used by gen 1 only
    (bucket / second.files["model.pt"].key("model.pt")).unlink()
    dest = tmp_path / "next"
    dest.mkdir()
    found = sync.restore_newest_whole(rclone, "i0", dest)
    assert found.manifest is not None and found.manifest.lineage == sync.BASE
    assert len(found.passed_over) == 2
    assert tree(dest) == {"model.pt": "epoch 0", "data.csv": "rows"}


def test_bodies_of_a_generation_whose_manifest_never_landed_go_at_the_next_boot(
    rclone: Rclone, wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(wd, "model.pt", "epoch 1")
    cp = start(rclone, wd)
    put(wd, "model.pt", "epoch 2")
    landed = cp.checkpoint("auto")
    put(wd, "model.pt", "epoch 3")
    put(wd, "extra.bin", "only in the lost generation")
    real_write = Rclone.write

    def failing_write(self, path, data):
        if "/manifests/" in path:
            raise TransferError("rclone rcat failed: connection reset")
        return real_write(self, path, data)

    monkeypatch.setattr(Rclone, "write", failing_write)
    with pytest.raises(TransferError):
        cp.checkpoint("auto")
    monkeypatch.undo()
    assert "gen/i0/00000002/extra.bin" in objects(rclone)

    dest = tmp_path / "next"
    dest.mkdir()
    found = sync.restore_newest_whole(rclone, "i0", dest)
    assert found.manifest == landed and found.passed_over == ()  # not damage: never was
    assert sync.remove_orphans(rclone, "i0", found) >= 1  # the lost generation's objects
    assert not any(o.startswith("gen/i0/00000002/") for o in objects(rclone))
    assert "gen/i0/00000001/model.pt" in objects(rclone)


def test_symbolic_links_are_refused_at_create_and_said_on_the_machine(
    rclone: Rclone, wd: Path, tmp_path: Path
) -> None:
    put(wd, "model.pt", "m")
    (tmp_path / "dataset").mkdir()
    os.symlink(tmp_path / "dataset", wd / "data")
    os.symlink("model.pt", wd / "latest.pt")
    with pytest.raises(IterativeError) as info:
        sync.upload_base(rclone, wd, ())
    message = str(info.value)
    assert "data, latest.pt" in message and "storage.exclude" in message
    assert objects(rclone) == set()  # nothing went up

    # Excluded, they are no obstacle; on the machine, a link is said once, not dropped.
    base = sync.upload_base(rclone, wd, ("data", "latest.pt"))
    said: list[str] = []
    cp = sync.Checkpointer(rclone, wd, "i0", "0-test", say=said.append)
    cp.adopt(base, sync.scan(wd))
    put(wd, "model.pt", "m2")
    assert cp.checkpoint("auto") is not None
    put(wd, "model.pt", "m3")
    cp.checkpoint("auto")
    assert len(said) == 1 and "data, latest.pt" in said[0] and "not checkpointed" in said[0]
