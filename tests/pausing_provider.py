"""A TaskProvider whose create pauses, in the provider server's own process, after the
task's bucket is made and before its machines start: the moment an interrupted
`pulumi up` is tested at. Pickled by reference (this module is importable there)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult

from pulumi_iterative import provider
from pulumi_iterative.clouds.local import backend as local_backend
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.steps import Step


class PausingProvider(TaskProvider):
    def __init__(self, reached: str) -> None:
        self.reached = reached  # a file the pause writes the task id to

    def create(self, props: dict[str, Any]) -> CreateResult:
        machine_steps = local_backend.Backend.machine_steps
        reached = Path(self.reached)

        def paused(backend, ref, spec, bootstrap):  # type: ignore[no-untyped-def]
            def pause() -> None:
                reached.write_text(ref.task_id)
                # Until the server shuts down (SIGINT), as a slow cloud call would.
                stopped = threading.Event()
                end = time.monotonic() + 120
                while not provider._server_stopping() and time.monotonic() < end:
                    stopped.wait(0.05)

            return [Step("Pause", pause), *machine_steps(backend, ref, spec, bootstrap)]

        local_backend.Backend.machine_steps = paused  # type: ignore[method-assign]
        return super().create(props)
