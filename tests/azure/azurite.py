"""azurite, Microsoft's Blob storage emulator, on loopback for the Azure tests.

It is an npm package (`azurite@3`; Node 20 resolves it to 3.35.0), installed into
`tests/azure/.azurite/` by `install()` (what .ci/run calls, and what the fixture
does when it is missing), never globally. Started with:

- `--skipApiVersionCheck`: the current SDKs and rclone send API versions newer than
  3.35 knows;
- `--inMemoryPersistence`: nothing written to disk, nothing to clean;
- `--disableTelemetry`;
- `--cert/--key` (a self-signed certificate for 127.0.0.1, made per session) and
  `--oauth basic`: HTTPS and Azure AD bearer tokens, so rclone and azure-storage-blob
  reach it exactly as they reach Azure, with the caller's `az` login or a VM's
  managed identity and no key. "basic" checks a token's audience, issuer and
  lifetime, not its signature (there is no Azure AD here to sign one): `jwt()` makes
  tokens of that shape.

The emulator's account is the public, well-known `devstoreaccount1` test account;
its key is published in Azure's documentation and is test material only: the tests
use it for their own inspection (leftovers, secrets scans), never the code under test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

FOLDER = Path(__file__).parent / ".azurite"
BINARY = FOLDER / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STORAGE_AUDIENCE = "https://storage.azure.com"
TENANT = "ab1f708d-50f6-404c-a006-d71b2ac7a606"


def jwt(principal: str, audience: str = STORAGE_AUDIENCE, lifetime: int = 3600) -> str:
    """An Azure AD-shaped access token (azurite's basic OAuth reads, does not verify)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime,
        "oid": principal,
        "tid": TENANT,
        "uti": uuid.uuid4().hex,  # every token differs, so a scan can look for exactly it
    }
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sig': 'none'})}"


def install() -> Path:
    """azurite, installed once (a lock keeps parallel test workers from racing npm)."""
    import fcntl

    FOLDER.mkdir(parents=True, exist_ok=True)
    with open(FOLDER / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not BINARY.exists():
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
        from tests.tls import self_signed  # cryptography: a test extra, not for install()

        self.cert, key = self_signed(
            log.parent, "127.0.0.1", cert_file="azurite-cert.pem", key_file="azurite-key.pem"
        )
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
                    "--cert",
                    str(self.cert),
                    "--key",
                    str(key),
                    "--oauth",
                    "basic",
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
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    def service(self):  # type: ignore[no-untyped-def]
        """The tests' own client (the public emulator key): for setup and inspection."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.endpoint,
            credential={"account_name": ACCOUNT, "account_key": KEY},
            connection_verify=str(self.cert),
        )

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
