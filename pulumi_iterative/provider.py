"""TaskProvider: the Pulumi dynamic provider behind IterativeTask.

Keep this class at this import path forever: Pulumi state pickles it by
reference (module + name). It holds no client, socket or lock; every method
builds what it needs. check and diff never call a cloud, so `pulumi preview`
is free and fast; check shows the task's cost estimate from the price snapshot.

A stack is shared by a team (README "Team stacks"), so state holds what is the same
in every checkout: the workdir relative to the project, environment entries as
declared. What a create took from its creator's shell is kept in the secret
`inherited` output and used by later updates; another shell never causes a diff,
only a warning. Every call resolves the workdir in the checkout it runs in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
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

from . import cost, lifecycle, registry
from .arguments import FIELDS, UPDATABLE
from .errors import IterativeError, SpecError
from .spec import (
    ENV_MAPS,
    TaskSpec,
    missing_from_shell,
    parse_spec,
    resolve_workdir,
    shell_values,
    with_shell_values,
)
from .status import TaskStatus
from .task import TaskRef, new_task_id

# Computed outputs: declared as None on the resource so the engine keeps them.
# `inherited` holds the values the environment took from the creator's shell (secret).
OUTPUTS = ("task_id", "ref", "bucket", "status", "events", "logs", "addresses", "inherited")
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the wire marker for values unknown at preview
_SCHEMES = {"gcs": "gs", "azureblob": "az"}  # rclone backend -> the scheme people write


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k in FIELDS}


def bucket_location(ref: TaskRef) -> str:
    """Where the task's files live, as people write it: `s3://bucket/prefix`, or a folder."""
    root = str(ref.remote["root"])
    m = re.match(r"^:([a-z0-9]+):(.*)$", root)
    if not m:
        return root
    return f"{_SCHEMES.get(m.group(1), m.group(1))}://{m.group(2)}"


Taken = dict[str, dict[str, str]]  # environment map -> variable -> value from a shell


def _taken_here(spec: TaskSpec) -> Taken:
    return {m: shell_values(getattr(spec, m), os.environ) for m in ENV_MAPS}


def _taken_in_state(olds: Mapping[str, Any]) -> Taken | None:
    """What the task took from its creator's shell; None for a state written before it
    was kept (its environment outputs then hold the values themselves)."""
    found = olds.get("inherited")
    if not isinstance(found, Mapping):
        return None
    return {m: {str(k): str(v) for k, v in dict(found.get(m) or {}).items()} for m in ENV_MAPS}


def _legacy_taken(olds: Mapping[str, Any], spec: TaskSpec) -> Taken:
    """For a state that kept values, not declarations: what `spec`'s shell entries took."""
    return {
        m: shell_values(getattr(spec, m), {str(k): str(v) for k, v in (olds.get(m) or {}).items()})
        for m in ENV_MAPS
    }


def _filled(spec: TaskSpec, taken: Taken) -> TaskSpec:
    """The spec with the environment the machine gets: `taken` plus the explicit values."""
    return replace(spec, **{m: with_shell_values(getattr(spec, m), taken[m]) for m in ENV_MAPS})


def _runnable(spec: TaskSpec, taken: Taken) -> TaskSpec:
    """The spec as this checkout runs it: the workdir here, the environment filled in."""
    storage = replace(spec.storage, workdir=resolve_workdir(spec.storage.workdir, os.getcwd()))
    return replace(_filled(spec, taken), storage=storage)


def _here(ref: TaskRef, spec: TaskSpec) -> TaskRef:
    """The ref with the workdir of this checkout: outputs come home here, not where the
    task was created."""
    return replace(ref, workdir=resolve_workdir(spec.storage.workdir, os.getcwd()))


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


def _server_stopping() -> bool:
    """The provider server is shutting down: the engine was interrupted (SIGINT reaches
    the server's main thread, which stops serving and returns). Operations run on worker
    threads, which the interpreter waits for; a create then makes nothing more.
    CPython says so only in `threading._SHUTTING_DOWN` (set before it joins the workers,
    while the main thread still counts as alive); no public API does."""
    return bool(getattr(threading, "_SHUTTING_DOWN", False)) or not (
        threading.main_thread().is_alive()
    )


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


def _log_estimate(spec: TaskSpec) -> None:
    """What the task will cost, from the snapshot (no cloud call), as engine messages."""
    try:
        found = cost.estimate(spec)
    except Exception as exc:  # an estimate never fails a preview
        pulumi_log.info(f"no cost estimate: {exc}")
        return
    with contextlib.suppress(Exception):
        for line in found.lines():
            pulumi_log.info(line)
        for warning in found.warnings:
            pulumi_log.warn(warning)


class TaskProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        raw = _inputs(news)
        unknown = {k for k, v in raw.items() if _has_unknown(v)}
        try:
            # As declared: the workdir relative to the project, shell values not taken yet,
            # so the inputs are the same from every checkout, home directory and CI runner.
            # A cloud's rules may warn (a GPU machine, a driverless image): forwarded.
            with _progress(str(raw.get("name") or "preview")):
                spec = parse_spec(
                    {k: v for k, v in raw.items() if k not in unknown},
                    resolve_env=False,
                    portable=True,
                )
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
        _log_estimate(spec)
        if not _olds:  # a new task takes values from this shell: say what it lacks, at preview
            for m in ENV_MAPS:
                for name in missing_from_shell(getattr(spec, m), os.environ):
                    pulumi_log.warn(
                        f"{m}.{name}: not set in your shell; the task would get an empty value"
                    )
        return CheckResult(spec.to_dict(), [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        try:
            old_spec = TaskSpec.from_dict(_inputs(olds))
            new_spec = TaskSpec.from_dict(_inputs(news))
        except SpecError:
            # Unknown values at preview or unparseable old state: replace to be safe.
            return DiffResult(changes=True, replaces=list(FIELDS), delete_before_replace=True)
        taken = _taken_in_state(olds)
        if taken is None:  # an older state holds the values: compare values, as it did
            new_spec = _filled(new_spec, _taken_here(new_spec))
        else:
            _warn_if_shell_differs(new_spec, taken)
        old, new = _flat(old_spec.to_dict()), _flat(new_spec.to_dict())
        if not old.get("name") and str(olds.get("task_id") or "").startswith("task-"):
            # A task made before `name` defaulted to the resource's name (so unnamed: its
            # id reads task-...) keeps running: the default arriving is no change.
            old["name"] = new.get("name")
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        replaces = sorted({k.split(".")[0] for k in changed if k not in UPDATABLE})
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=True
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = TaskSpec.from_dict(_inputs(props))
        taken = _taken_here(spec)
        task_id = new_task_id(spec.name)
        with _progress(task_id):
            # Remembered before the first cloud call, so a provider killed mid-create (a
            # second Ctrl-C) leaves a task `pulumi-iterative list`/`delete` can find.
            ref = registry.remembered(
                lambda on_prepared: lifecycle.create(
                    _runnable(spec, taken),
                    task_id=task_id,
                    on_prepared=on_prepared,
                    cancelled=_server_stopping,
                )
            )
        return CreateResult(ref.task_id, self._outputs(spec, ref, taken))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not props.get("ref"):
            return ReadResult("", {})
        spec = TaskSpec.from_dict(_inputs(props))
        ref = _here(TaskRef.from_dict(props["ref"]), spec)
        # Status first: a task this workstation cannot reach is an error, never "gone".
        with lifecycle.session(ref):  # k8s: one transfer pod for both
            status = lifecycle.read(ref)
            if not lifecycle.exists(ref):
                return ReadResult("", {})  # deleted outside Pulumi: the engine drops it
        outputs = self._outputs(spec, ref, _taken_in_state(props), status)
        kept = (props.get("status") or {}).get("cost") or {}
        if kept.get("final") and "cost" in outputs["status"]:
            # A finished task's figure stays as it was: the cloud forgets old machines.
            outputs["status"]["cost"] = kept
        # An older state stays in its form (values, no declarations) until an update.
        return ReadResult(id_, outputs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = TaskSpec.from_dict(_inputs(news))
        # The running task keeps what it took from its creator's shell, not the updater's.
        taken = _taken_in_state(olds) or _legacy_taken(olds, spec)
        ref = _here(TaskRef.from_dict(olds["ref"]), spec)
        ref = lifecycle.update(ref, _runnable(spec, taken))
        return UpdateResult(self._outputs(spec, ref, taken))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("ref"):
            return
        ref = _here(TaskRef.from_dict(props["ref"]), TaskSpec.from_dict(_inputs(props)))
        with _progress(ref.task_id):
            pulled = lifecycle.delete(ref)
        registry.forget_quietly(ref.task_id)
        if pulled:
            pulumi_log.info(
                f"{ref.task_id}: brought {pulled} output file(s) home into {ref.workdir}"
            )

    @staticmethod
    def _outputs(
        spec: TaskSpec, ref: TaskRef, taken: Taken | None, status: TaskStatus | None = None
    ) -> dict[str, Any]:
        if status is None:
            try:
                status = lifecycle.read(ref)
            except IterativeError as exc:
                pulumi_log.warn(f"could not read the task's status: {exc}")
        # State keeps the declared workdir, never this checkout's absolute path.
        ref = replace(ref, workdir=spec.storage.workdir)
        return {
            **spec.to_dict(),
            "task_id": ref.task_id,
            "ref": ref.to_dict(),
            "bucket": bucket_location(ref),
            "status": status.to_dict() if status else {"state": "unknown"},
            "events": [
                {"time": e.time, "kind": e.kind, "machine": e.machine, "message": e.message}
                for e in (status.events if status else ())
            ],
            "logs": list(status.logs.values()) if status else [],
            "addresses": list(status.addresses) if status else [],
            **({} if taken is None else {"inherited": taken}),
        }


def _warn_if_shell_differs(spec: TaskSpec, taken: Taken) -> None:
    """The policy for shell values: a task keeps what it took at create, so a teammate's
    or CI's shell never replaces it; a difference is only reported."""
    here = _taken_here(spec)
    for m in ENV_MAPS:
        differ = sorted(
            k for k in here[m].keys() | taken[m].keys() if here[m].get(k) != taken[m].get(k)
        )
        if differ:
            pulumi_log.warn(
                f"{m}: {', '.join(differ)} in your shell differ from what the running task "
                "took from its creator's shell; it keeps those values (no replace). To "
                "restart it with yours, run `pulumi up --replace` on it"
            )
