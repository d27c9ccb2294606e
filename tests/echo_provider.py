"""A tiny dynamic provider that reports what it received, to test the harness.

It lives at an importable path (``tests.echo_provider``) so dill pickles it by
reference, as the real TaskProvider will be.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

PROVIDER_KEY = "__provider"
# Keys create/update compute; diff ignores them because it gets old *outputs*.
OUTPUT_KEYS = frozenset({"computed", "cloud", "greeting", "seen", "dropped"})


def _inputs(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


class EchoProvider(ResourceProvider):
    # Class defaults: an instance unpickled without configure still answers.
    cloud: str | None = None
    greeting: str | None = None

    def __init__(self, label: str = "echo") -> None:
        super().__init__()
        # Plain data only: it is pickled into every resource's __provider.
        self.label = label

    def configure(self, req: ConfigureRequest) -> None:
        self.cloud = req.config.get("iterative:cloud")
        self.greeting = req.config.get("greeting")  # bare: looked up as "<project>:greeting"

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = _inputs(news)
        inputs.setdefault("size", 1)
        failures = []
        size = inputs["size"]
        if isinstance(size, int | float) and not isinstance(size, bool) and size < 0:
            failures.append(CheckFailure("size", f"size must be >= 0, got {size:g}"))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = (set(_inputs(olds)) - OUTPUT_KEYS) | set(_inputs(news))
        changed = sorted(k for k in keys if olds.get(k) != news.get(k))
        replaces = ["name"] if "name" in changed else []
        return DiffResult(
            changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces)
        )

    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        inputs = _inputs(props)
        return {
            **inputs,
            "computed": f"computed-{inputs.get('name')}",
            "cloud": self.cloud,
            "greeting": self.greeting,
            # What the server handed us, by type: shows floats, dropped Nones, plain secrets.
            "seen": {k: type(v).__name__ for k, v in inputs.items()},
            "dropped": None,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        if props.get("fail"):
            raise RuntimeError(f"echo create failed: {props['fail']}")
        pulumi.log.info(f"echo: creating {props.get('name')}")
        id_ = "" if props.get("empty_id") else f"{self.label}-{props.get('name')}"
        return CreateResult(id_, self._outs(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if props.get("gone"):
            return ReadResult("", {})
        return ReadResult(id_, _inputs(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._outs(news))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        pulumi.log.info(f"echo: deleting {id_}")
