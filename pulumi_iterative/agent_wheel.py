"""The agent for a version PyPI does not have: a wheel of this very package.

A machine installs the agent at the provider's own version. A released version
comes from PyPI by pin; an unreleased one (a `.dev`/local version, or an
editable or source-tree install, as during development) cannot, so the backend
puts a wheel of the running package into the task's bucket and the machine
fetches it with its own identity. The wheel is built here with zipfile, from the
package's files and its installed metadata: no build backend, no network,
byte-for-byte reproducible (fixed timestamps, sorted entries). No cloud SDK here;
every cloud can use it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import sysconfig
import zipfile
from pathlib import Path

from . import __version__

DIST = "pulumi-iterative"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def package_dir() -> Path:
    import pulumi_iterative

    return Path(pulumi_iterative.__file__).resolve().parent


def released() -> bool:
    """Can a machine get this exact agent from PyPI by its version pin?

    Not for a `.dev`/local version, a package run from a source tree (editable or
    on sys.path), or one installed from a URL, folder or VCS (PEP 610's
    direct_url.json): the code may differ from what PyPI has under that version.
    """
    if "dev" in __version__ or "+" in __version__:
        return False
    if any(d.read_text("direct_url.json") for d in importlib.metadata.distributions(name=DIST)):
        return False
    installed = {
        Path(p).resolve()
        for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        if p
    }
    return any(parent in installed for parent in package_dir().parents)


def wheel_name() -> str:
    return f"{DIST.replace('-', '_')}-{__version__}-py3-none-any.whl"


def _metadata() -> tuple[str, str]:
    """(METADATA text, entry_points.txt text) of the installed distribution."""
    found = list(importlib.metadata.distributions(name=DIST)) or list(
        importlib.metadata.distributions(name=DIST.replace("-", "_"))
    )
    for dist in found:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
        if text and "Requires-Dist" in text:
            return text, dist.read_text("entry_points.txt") or ""
    raise RuntimeError(
        f"the installed metadata of {DIST} was not found; install the package "
        "(`pip install -e .`) so its agent can be built"
    )


def _package_files() -> list[tuple[str, bytes]]:
    root = package_dir()
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        out.append((f"pulumi_iterative/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return out


def build_wheel() -> bytes:
    """The running package as a py3-none-any wheel (PEP 427), in memory."""
    metadata, entry_points = _metadata()
    info = f"{DIST.replace('-', '_')}-{__version__}.dist-info"
    files = _package_files()
    files.append((f"{info}/METADATA", metadata.encode()))
    files.append(
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: pulumi-iterative\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = io.StringIO()
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(data)}\n")
    record.write(f"{info}/RECORD,,\n")
    files.append((f"{info}/RECORD", record.getvalue().encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
            zf.writestr(entry, data)
    return buf.getvalue()
