"""Small helpers for the Kubernetes tests: polling with a deadline, raw requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll until check() is truthy; generous deadlines, never a fixed sleep."""
    end = time.monotonic() + timeout
    delay = 0.02
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(0.5, delay * 2)


def raw(api: Any, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any, Any]:
    """A request through the official client's own HTTP stack, bypassing its model
    serialization (newer clients refuse unknown fields before sending; older ones do
    not, and the server must): (status, parsed body, response headers)."""
    configuration = api.configuration
    auth = {
        str(s["key"]): str(s["value"])
        for s in configuration.auth_settings().values()
        if s.get("in") == "header"
    }
    answer = api.rest_client.pool_manager.request(
        method,
        configuration.host + path,
        body=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **auth, **headers},
    )
    data = answer.data
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode(errors="replace")
    return answer.status, parsed, answer.headers


def leftovers(cluster: Any, task_id: str) -> list[str]:
    """Every object still labelled with the task (and every pod process still alive)."""
    from pulumi_iterative.clouds.k8s.names import TASK_LABEL

    found = []
    for plural in (
        "pods",
        "jobs",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "persistentvolumeclaims",
    ):
        for obj in cluster.objects(plural):
            if (obj["metadata"].get("labels") or {}).get(TASK_LABEL) == task_id:
                found.append(f"{plural}/{obj['metadata']['name']}")
    return found + [f"process {pid}" for pid in cluster.live_processes()]
