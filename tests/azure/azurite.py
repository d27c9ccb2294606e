"""azurite, Microsoft's Blob storage emulator, on loopback for the Azure tests.

It is an npm package (`azurite@3`; Node 20 resolves it to 3.35.0), installed into
`tests/azure/.azurite/` by `install()` (what .ci/run calls, and what the fixture
does when it is missing), never globally. Started with:

- `--skipApiVersionCheck`: the current SDKs and rclone send API versions newer than
  3.35 knows;
- `--inMemoryPersistence`: nothing written to disk, nothing to clean;
- `--disableTelemetry`.

The emulator's account is the public, well-known `devstoreaccount1` test account;
its key is published in Azure's documentation and is test material only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

FOLDER = Path(__file__).parent / ".azurite"
BINARY = FOLDER / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def install() -> Path:
    if not BINARY.exists():
        FOLDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(FOLDER),
                "azurite@3",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    return BINARY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Azurite:
    def __init__(self, log: Path) -> None:
        binary = install()
        self.port = _free_port()
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--inMemoryPersistence",
                    "--silent",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=log.parent,
            )
        self._wait()

    def _wait(self, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("azurite did not start listening in time")

    @property
    def endpoint(self) -> str:
        """The emulator account's Blob endpoint (what rclone's `endpoint` takes)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def service(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def reset(self) -> None:
        """Every container gone (between tests)."""
        service = self.service()
        for container in service.list_containers():
            with contextlib.suppress(Exception):
                service.delete_container(container.name)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


if __name__ == "__main__":  # `python -m tests.azure.azurite`: install only (for .ci/run)
    print(install())
    os._exit(0)
