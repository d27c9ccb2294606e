"""TaskProvider: the Pulumi dynamic provider behind IterativeTask.

Keep this class at this import path forever: Pulumi state pickles it by
reference (module + name). It holds no client, socket or lock; every method
builds what it needs. check and diff never call a cloud, so `pulumi preview`
is free and fast.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi import log as pulumi_log
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

from . import lifecycle
from .errors import IterativeError, SpecError
from .spec import FIELDS, TaskSpec, parse_spec
from .task import TaskRef, new_task_id

# Computed outputs: declared as None on the resource so the engine keeps them.
OUTPUTS = ("task_id", "ref", "status", "events", "logs", "addresses")
# Changing these does not need new machines (the Terraform provider replaces on the rest).
UPDATABLE = {"storage.output", "storage.exclude"}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the wire marker for values unknown at preview


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k in FIELDS}


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN):
        return True
    if isinstance(value, Mapping):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_unknown(v) for v in value)
    return False


def _flat(spec: dict[str, Any]) -> dict[str, Any]:
    """storage.* as separate keys, so a diff can tell output from workdir."""
    out = {k: v for k, v in spec.items() if k != "storage"}
    out.update({f"storage.{k}": v for k, v in spec["storage"].items()})
    return out


class _ToPulumiLog(logging.Handler):
    """Forward the package's progress lines ([2/4] Upload workdir) to the engine, each
    once, prefixed with the task it belongs to.

    The provider server runs up to 4 operations at once on one provider object, in
    threads: so there is one handler for the whole process, installed while any
    operation runs, and each thread's operation is known by its thread id (a line from
    a helper thread of an operation goes out once, without a task name)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.operations: dict[int, str] = {}  # thread id -> task id
        self.old_level = logging.NOTSET  # the logger's level before the first operation

    def emit(self, record: logging.LogRecord) -> None:
        task = self.operations.get(record.thread or 0)
        message = f"{task}: {record.getMessage()}" if task else record.getMessage()
        with contextlib.suppress(Exception):
            (pulumi_log.warn if record.levelno >= logging.WARNING else pulumi_log.info)(message)


_FORWARD = _ToPulumiLog()
_FORWARD_LOCK = threading.Lock()  # module level: a provider object holds no lock


@contextlib.contextmanager
def _progress(task_id: str) -> Iterator[None]:
    logger = logging.getLogger("pulumi_iterative")
    me = threading.get_ident()
    with _FORWARD_LOCK:
        if not _FORWARD.operations:
            logger.addHandler(_FORWARD)
            _FORWARD.old_level = logger.level
            logger.setLevel(logging.INFO)
        _FORWARD.operations[me] = task_id
    try:
        yield
    finally:
        with _FORWARD_LOCK:
            _FORWARD.operations.pop(me, None)
            if not _FORWARD.operations:
                logger.removeHandler(_FORWARD)
                logger.setLevel(_FORWARD.old_level)


class TaskProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        raw = _inputs(news)
        unknown = {k for k, v in raw.items() if _has_unknown(v)}
        try:
            spec = parse_spec({k: v for k, v in raw.items() if k not in unknown})
        except SpecError as exc:
            failures = [
                CheckFailure(e.field, e.message)
                for e in exc.errors
                if e.field.split(".")[0] not in unknown
            ]
            if unknown:  # only known at `up`: check again then
                failures = [f for f in failures if f.property not in ("script", "cloud")]
            return CheckResult(news, failures)
        if unknown:
            return CheckResult(news, [])
        return CheckResult(spec.to_dict(), [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        try:
            old = _flat(TaskSpec.from_dict(_inputs(olds)).to_dict())
            new = _flat(TaskSpec.from_dict(_inputs(news)).to_dict())
        except SpecError:
            # Unknown values at preview or unparseable old state: replace to be safe.
            return DiffResult(changes=True, replaces=list(FIELDS), delete_before_replace=True)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        replaces = sorted({k.split(".")[0] for k in changed if k not in UPDATABLE})
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=True
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = TaskSpec.from_dict(_inputs(props))
        task_id = new_task_id(spec.name)
        with _progress(task_id):
            ref = lifecycle.create(spec, task_id=task_id)
        return CreateResult(ref.task_id, self._outputs(spec, ref))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not props.get("ref"):
            return ReadResult("", {})
        ref = TaskRef.from_dict(props["ref"])
        if not lifecycle.exists(ref):
            return ReadResult("", {})  # deleted outside Pulumi: the engine drops it
        spec = TaskSpec.from_dict(_inputs(props))
        return ReadResult(id_, self._outputs(spec, ref))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = TaskSpec.from_dict(_inputs(news))
        ref = TaskRef.from_dict(olds["ref"])
        ref = lifecycle.update(ref, spec)
        return UpdateResult(self._outputs(spec, ref))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("ref"):
            return
        ref = TaskRef.from_dict(props["ref"])
        with _progress(ref.task_id):
            pulled = lifecycle.delete(ref)
        if pulled:
            pulumi_log.info(f"{ref.task_id}: brought {pulled} output file(s) home")

    @staticmethod
    def _outputs(spec: TaskSpec, ref: TaskRef) -> dict[str, Any]:
        try:
            status = lifecycle.read(ref)
        except IterativeError as exc:
            pulumi_log.warn(f"could not read the task's status: {exc}")
            status = None
        return {
            **spec.to_dict(),
            "task_id": ref.task_id,
            "ref": ref.to_dict(),
            "status": status.to_dict() if status else {"state": "unknown"},
            "events": [
                {"time": e.time, "kind": e.kind, "machine": e.machine, "message": e.message}
                for e in (status.events if status else ())
            ],
            "logs": list(status.logs.values()) if status else [],
            "addresses": list(status.addresses) if status else [],
        }
