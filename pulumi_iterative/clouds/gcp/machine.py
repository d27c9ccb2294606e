"""What the agent knows about a GCE machine: the metadata server, its index, leaving the group.

The metadata server is `metadata.google.internal` unless GCE_METADATA_HOST (the
variable google-auth and Google's Go SDK honour too) points elsewhere; every
request carries `Metadata-Flavor: Google`. From it the machine learns its name,
zone and project, and its service account's token (through google-auth).

The index needs no claim protocol: the group made one named instance per index
(`<group>-<index>`) and recreates a lost one under the same name, so the name is
the index. The preemption notice is `instance/preempted`, watched with
`wait_for_change` by a background thread from the first question on, so the agent's
cheap poll sees the notice the moment GCE gives it (spot machines get 30 seconds).
Leaving the group is `deleteInstances` on its own instance, which lowers the
target size; the machine's identity may do that on this group only.

Imports only what the agent's install has (google-auth through the `gcp` extra);
never Pulumi, never the backend, never the compute client library.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ...records import BootConfig
from .names import Names

log = logging.getLogger(__name__)

METADATA_HOST = "metadata.google.internal"
HOST_ENV = "GCE_METADATA_HOST"
WATCH_TIMEOUT = 60  # seconds one wait_for_change request is held open


class Metadata:
    """A minimal metadata server client (stdlib only)."""

    def __init__(self, host: str | None = None, timeout: float = 5.0) -> None:
        self.base = (
            f"http://{host or os.environ.get(HOST_ENV) or METADATA_HOST}/computeMetadata/v1/"
        )
        self.timeout = timeout

    def get(self, path: str, *, attempts: int = 3, timeout: float | None = None) -> str | None:
        """The value at path; None when the server says 404 (not there)."""
        request = urllib.request.Request(self.base + path, headers={"Metadata-Flavor": "Google"})
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                    return str(answer.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if attempt == attempts - 1:
                    raise
            except OSError:
                if attempt == attempts - 1:
                    raise
            time.sleep(0.2 * 2**attempt)
        return None


class MachineSide:
    def __init__(self, config: BootConfig) -> None:
        self.names = Names(config.task_id)
        self.metadata = Metadata()
        self._name = ""
        self._id = ""
        self._zone = ""
        self._project = ""
        self._preempted = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- what the metadata server says --------------------------------------------------

    def _value(self, path: str) -> str:
        found = self.metadata.get(path)
        if not found:
            raise RuntimeError(f"the metadata server has no {path}")
        return found.strip()

    def name(self) -> str:
        """The instance's name, `<group>-<index>`: the same for a replacement."""
        if not self._name:
            self._name = self._value("instance/name")
        return self._name

    def instance_id(self) -> str:
        """GCE's numeric id: unique per machine, so a replacement is told apart."""
        if not self._id:
            self._id = self._value("instance/id")
        return self._id

    def zone(self) -> str:
        if not self._zone:
            self._zone = self._value("instance/zone").rsplit("/", 1)[-1]
        return self._zone

    def project(self) -> str:
        if not self._project:
            self._project = self._value("project/project-id")
        return self._project

    def region(self) -> str:
        return self.zone().rsplit("-", 1)[0]

    # --- MachineSide --------------------------------------------------------------------

    def home(self) -> Path:
        return Path.home() / "pulumi-iterative"

    def index(self) -> int:
        found = self.names.index_of(self.name())
        if found is None:
            raise RuntimeError(
                f"instance {self.name()} is not one of task {self.names.task_id}'s "
                f"machines ({self.names.group}-<index>)"
            )
        return found

    def preemption_notice(self) -> bool:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, daemon=True, name="preemption-watch"
            )
            self._watcher.start()
        return self._preempted.is_set()

    def _watch(self) -> None:
        """Hold `instance/preempted?wait_for_change` open; it answers when GCE says TRUE."""
        path = "instance/preempted"
        while not self._preempted.is_set():
            try:
                value = self.metadata.get(path, attempts=1)
                if (value or "").strip() == "TRUE":
                    break
                self.metadata.get(
                    f"{path}?wait_for_change=true&timeout_sec={WATCH_TIMEOUT}",
                    attempts=1,
                    timeout=WATCH_TIMEOUT + 10,
                )
            except Exception as exc:  # the notice is best effort; the shutdown's SIGTERM comes
                log.debug("preemption watch: %s", exc)
                time.sleep(2)
        log.warning("GCE announced the preemption of this machine")
        self._preempted.set()

    def leave_group(self) -> None:
        """deleteInstances on this instance: the group's target size drops by one.

        One JSON call through google-auth's session with the machine's token (the
        compute client library would cost seconds of import on every machine)."""
        from .api import COMPUTE, call, rest

        path = (
            f"compute/v1/projects/{self.project()}/regions/{self.region()}/"
            f"instanceGroupManagers/{self.names.group}/deleteInstances"
        )
        body = {
            "instances": [f"zones/{self.zone()}/instances/{self.name()}"],
            "skipInstancesOnValidationError": True,
        }
        call(rest, "POST", COMPUTE, path, body, on_machine=True)
