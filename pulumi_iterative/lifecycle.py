"""The task lifecycle every cloud shares: create, read, logs, pull, stop, delete.

A backend supplies the cloud's parts (bucket, machines, group view); this module
adds what is the same everywhere: the workdir upload as generation `base`, the
task definition in the bucket, the bootstrap, status from the bucket's reports,
and pulling outputs before anything is removed. The provider and the CLI both
call these functions, so they behave the same. Nothing here writes to the
workstation's home (the task list that lets the CLI find a task by id is kept,
best-effort, by the CLI and the provider), so a CI runner with a read-only or
absent home directory can create, refresh and destroy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, agent_wheel, catalog, clouds, cost, logsegments, reportnames, sync
from .agent.bootstrap import render_bootstrap
from .clouds import get_backend
from .clouds.base import Backend
from .errors import FieldError, IterativeError, NotFound, SpecError, TransferError
from .records import BootConfig, BootReport, StopMarker, TaskDefinition
from .spec import TaskSpec
from .status import Event, TaskStatus, summarize
from .steps import Step, run_steps, teardown
from .storage import (
    AGENT_DIR,
    BOOTSTRAP_FILE,
    STATUS,
    TASK_FILE,
    Rclone,
    Remote,
)
from .task import TaskRef, new_task_id

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 1000  # per machine, in status outputs; `logs` gives everything
LOG_TAIL_BYTES = 64 * 1024  # ... and at most this much of each,
LOG_TAIL_TOTAL = 1024 * 1024  # and this much in all: the state file stays small


def rclone_for(ref: TaskRef, *, progress: bool = False) -> Rclone:
    return Rclone(Remote.from_dict(ref.remote), progress=progress)


@contextlib.contextmanager
def bucket(ref: TaskRef, *, progress: bool = False, fresh: bool = False) -> Iterator[Rclone]:
    """The task's bucket as this workstation reaches it, for one operation.

    Most clouds' buckets are reachable directly at `ref.remote`. A backend with an
    `open_bucket(ref, fresh=...)` context manager (k8s: a volume inside the cluster, reached
    through a short-lived transfer pod) gives a session remote instead, closed when
    the operation ends. `fresh`: a session held across polls, whose listings must
    show what the machines wrote since its last one.
    """
    opener = getattr(get_backend(ref.cloud), "open_bucket", None)
    if opener is None:
        yield rclone_for(ref, progress=progress)
        return
    with opener(ref, fresh=fresh) as remote:
        yield Rclone(remote, progress=progress)


@contextlib.contextmanager
def session(ref: TaskRef) -> Iterator[None]:
    """Keep the task's bucket open for the calls inside: on k8s one transfer pod serves
    every status read, log fetch and pull within (a backend's `open_bucket` reuses an
    open session of the same task), instead of one pod each."""
    with bucket(ref, fresh=True):
        yield


def _steps(
    backend: Backend,
    ref: TaskRef,
    spec: TaskSpec,
    progress: bool,
    sessions: contextlib.ExitStack,
) -> list[Step]:
    install = backend.install(ref)
    bootstrap = render_bootstrap(
        BootConfig(ref.task_id, ref.cloud, ref.remote, __version__), install
    )
    opened: list[Rclone] = []

    def session() -> Rclone:
        """One bucket session for the create's transfers, opened when first needed."""
        if not opened:
            opened.append(sessions.enter_context(bucket(ref, progress=progress)))
        return opened[0]

    def upload() -> None:
        workdir = spec.storage.workdir
        sync.upload_base(
            session(), workdir, spec.storage.exclude, show_progress=progress, empty=not workdir
        )

    def store() -> None:
        rclone = session()
        rclone.write(rclone.remote.path(TASK_FILE), task_definition(spec, ref))
        rclone.write(rclone.remote.path(BOOTSTRAP_FILE), bootstrap.encode())

    def upload_agent() -> None:
        # A version PyPI does not have: machines fetch this wheel with their own identity
        # (each cloud's install() says how). It goes with the bucket or prefix. From a
        # file, so rclone knows its size and makes one plain upload (no multipart).
        with tempfile.TemporaryDirectory(prefix="iterative-agent-") as tmp:
            wheel = Path(tmp) / agent_wheel.wheel_name()
            wheel.write_bytes(agent_wheel.build_wheel())
            rclone = session()
            rclone.upload_file(wheel, rclone.remote.path(AGENT_DIR, wheel.name))

    common = [Step("Upload workdir", upload), Step("Store task definition", store)]
    if install.wheel_from_bucket:
        common.insert(0, Step("Upload agent", upload_agent))
    return backend.storage_steps(ref) + common + backend.machine_steps(ref, spec, bootstrap)


def task_definition(spec: TaskSpec, ref: TaskRef) -> bytes:
    """What the agent reads from the private bucket (secrets included, never user-data)."""
    return json.dumps(
        TaskDefinition(
            task_id=ref.task_id,
            script=spec.script,
            parallelism=spec.parallelism,
            created=ref.created,
            deadline=ref.deadline,
            environment=dict(spec.environment),
            secret_environment=dict(spec.secret_environment),
            exclude=spec.storage.exclude,
            checkpoint_interval=spec.storage.checkpoint_interval,
            pricing=dict(ref.pricing),
        ).to_dict(),
        sort_keys=True,
    ).encode()


def create(
    spec: TaskSpec,
    *,
    task_id: str | None = None,
    progress: bool = False,
    on_prepared: Callable[[TaskRef], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TaskRef:
    """Provision, upload and start; on failure everything made is removed (StepFailed),
    and the same when `cancelled` says so between steps (CreateCancelled)."""
    backend = get_backend(spec.cloud)
    ref = backend.prepare(spec, task_id or new_task_id(spec.name))
    backend.check_access(ref)  # missing credentials are said first, before any step
    ref = replace(ref, pricing=pricing_at_create(backend, spec, ref).to_dict())
    if on_prepared is not None:
        # Before the first cloud call: the CLI and the provider register the task here,
        # so `list` and `delete` find one whose create was cut short (a killed process).
        on_prepared(ref)
    with contextlib.ExitStack() as sessions:
        steps = _steps(backend, ref, spec, progress, sessions)
        made = run_steps(steps, lambda m: backend.remove(ref, m), cancelled=cancelled)
    return replace(ref, made=made)


def pricing_at_create(backend: Backend, spec: TaskSpec, ref: TaskRef) -> cost.Pricing:
    """The snapshot's prices, with the cloud's live prices where it offers them (asked
    here, at create, never at preview). Without them the snapshot stands; a budget with
    no price from either is refused here, before anything is made."""
    pricing = _live_or_snapshot(backend, spec, ref)
    if spec.budget and not pricing.ceiling:
        fix = f"{cost.CHOOSE_PRICED}. Nothing was created."
        raise SpecError([FieldError("budget", pricing.unpriced_budget(fix, ref.region))])
    return pricing


def _live_or_snapshot(backend: Backend, spec: TaskSpec, ref: TaskRef) -> cost.Pricing:
    live_prices = getattr(backend, "live_prices", None)  # optional in the contract
    asked = clouds.get(spec.cloud).priced_at_create(spec.is_spot)
    if live_prices is None or spec.notional_price or not asked:
        return cost.pricing_for(spec)
    types = catalog.resolve_machine(spec.cloud, spec.machine).types
    source = str(getattr(backend, "live_price_source", "") or f"{spec.cloud} live prices")
    try:
        live = dict(live_prices(ref.region, types))
    except Exception as exc:  # a price is worth a warning, never a failed create
        log.warning("live prices unavailable from %s (%s); using the snapshot", source, exc)
        return cost.pricing_for(spec)
    today = datetime.now(timezone.utc).date().isoformat()
    pricing = cost.pricing_for(spec, live, f"{source} at create", today)
    if pricing.rate is not None:  # the figure the task is billed at, and where it came from
        log.info(
            "price: %s/h per machine (%s)",
            cost.money(pricing.rate, pricing.currency),
            pricing.describe(),
        )
    return pricing


@dataclass(frozen=True)
class Reports:
    """What the status folder says: every boot's report, and whether the task was stopped."""

    boots: tuple[BootReport, ...]
    stopped: StopMarker | None = None


def reports(ref: TaskRef) -> Reports:
    """Every boot's status report, from one listing of the status folder (the reports
    are in the objects' names; see reportnames), plus a read of the few whole objects
    there: a stop marker, an older agent's report, a report whose name was cut."""
    with bucket(ref) as rclone:
        return _reports(rclone)


def _reports(rclone: Rclone) -> Reports:
    boots, stopped = reportnames.read_all(rclone)
    return Reports(tuple(boots), stopped)


def read(ref: TaskRef, *, with_logs: bool = True) -> TaskStatus:
    backend = get_backend(ref.cloud)
    # Asked before the reports: a boot reports before its machine ends, so the cloud's
    # "will run it again" may be stale (the task looks queued a poll longer), never a
    # report (a retry's report missed while the cloud already gave up: failed too early).
    ask_retrying = getattr(backend, "retrying", None)
    retrying = ask_retrying(ref) if ask_retrying is not None else ()
    with bucket(ref) as rclone:  # one session for the reports and the logs
        found = _reports(rclone)
        texts = _tail_logs(rclone, ref.task_id, len(found.boots)) if with_logs else {}
    machines = backend.machines(ref)
    if with_logs:
        texts = {**texts, **_live_logs(backend, ref, LOG_TAIL_LINES)}
    now = time.time()
    status = summarize(
        found.boots,
        machines,
        parallelism=ref.parallelism,
        deadline=ref.deadline,
        now=now,
        stopped=found.stopped is not None,
        retrying=retrying,
    )
    events = sorted(backend.events(ref) + report_events(found.boots), key=lambda e: e.time)
    logs = texts
    return TaskStatus(
        status.state,
        status.counts,
        status.machines,
        status.restarts,
        tuple(events),
        status.addresses,
        logs,
        cost.spend(
            cost.Pricing.from_dict(ref.pricing),
            found.boots,
            machines,
            now=now,
            done=status.done,
        ),
    )


def report_events(boots: tuple[BootReport, ...]) -> list[Event]:
    out = []
    for r in boots:
        if r.started:
            message = f"machine {r.machine} started (restarts {r.restarts})"
            out.append(Event(r.started, "start", r.machine, message))
            if r.notice:
                notice = f"machine {r.machine} {r.notice}"
                out.append(Event(r.started, "restore", r.machine, notice))
        if r.finished:
            reason = f": {r.reason}" if r.reason else ""
            out.append(
                Event(r.finished, r.state, r.machine, f"machine {r.machine} {r.state}{reason}")
            )
    return out


def fetch_logs(ref: TaskRef) -> dict[str, str]:
    """machine -> its whole log, from one listing and one transfer of the segments; and
    the live logs the cloud keeps of its running machines (k8s: pods/log)."""
    with bucket(ref) as rclone:
        got = logsegments.fetch(rclone)
    logs = {m: blob.decode(errors="replace") for m, (blob, _, _) in got.items()}
    return {**logs, **_live_logs(get_backend(ref.cloud), ref, None)}


def _live_logs(backend: object, ref: TaskRef, tail_lines: int | None) -> dict[str, str]:
    """Optional Backend.live_logs: what the cloud's own log of each running machine
    holds now, under a key of its own (the bucket's log is the lasting record). Capped
    like the bucket's tails: it goes into status outputs."""
    live = getattr(backend, "live_logs", None)
    if live is None:
        return {}
    logs = live(ref, tail_lines)
    cap = max(4096, min(LOG_TAIL_BYTES, LOG_TAIL_TOTAL // max(len(logs), 1)))
    return {k: v[-cap:] if tail_lines else v for k, v in logs.items()}


def new_log_bytes(ref: TaskRef, seen: dict[str, int]) -> dict[str, bytes]:
    """machine -> its log bytes past `seen` (updated): only the segments not fetched yet."""
    out = {}
    with bucket(ref) as rclone:  # k8s: a session's remote, not the pods' own path
        got = logsegments.fetch(rclone, since=seen)
    for m, (blob, _, end) in got.items():
        if blob:
            out[m] = blob
        seen[m] = max(seen.get(m, 0), end)
    return out


def _tail_logs(rclone: Rclone, task_id: str, machines: int) -> dict[str, str]:
    """machine -> the end of its log, capped in lines and bytes (a runaway log must not
    grow the Pulumi state); a cut log starts with a note saying how to see all of it."""
    cap = max(4096, min(LOG_TAIL_BYTES, LOG_TAIL_TOTAL // max(machines, 1)))
    out = {}
    for m, (blob, _, end) in logsegments.fetch(rclone, tail=cap).items():
        text = blob[-cap:].decode(errors="replace")
        cut = end - min(len(blob), cap)
        lines = text.splitlines(keepends=True)
        if cut > 0 or len(lines) > LOG_TAIL_LINES:
            lines = lines[1:] if cut > 0 else lines  # the first line may be partial
            lines = lines[-LOG_TAIL_LINES:]
            shown = sum(len(line.encode()) for line in lines)
            note = (
                f"[... {end - shown} earlier bytes not shown; "
                f"`pulumi-iterative logs {task_id}` prints the whole log]\n"
            )
            lines.insert(0, note)
        out[m] = "".join(lines)
    return out


def pull(ref: TaskRef, dest: str | Path | None = None, *, progress: bool = False) -> int:
    """Bring `output` from the newest generations into dest (default: the workdir)."""
    target = dest or ref.workdir
    if not target:
        raise IterativeError("this task has no workdir to bring outputs into; pass a folder")
    with bucket(ref, progress=progress) as rclone:
        return sync.pull(rclone, target, ref.output, show_progress=progress)


def stop(ref: TaskRef) -> None:
    """Machines to zero, storage kept; status shows `stopped` from then on."""
    get_backend(ref.cloud).stop(ref)
    marker = json.dumps(StopMarker(time.time()).to_dict()).encode() + b"\n"
    with bucket(ref) as rclone:
        rclone.write(rclone.remote.path(STATUS, "stop.json"), marker)


def delete(ref: TaskRef, *, pull_outputs: bool = True, progress: bool = False) -> int:
    """Stop machines, pull `output` home, then remove everything; safe to re-run.

    If the outputs cannot be brought home nothing is removed, so no data is lost.
    Returns the number of output files pulled.
    """
    backend = get_backend(ref.cloud)
    backend.stop(ref)  # machines take a last checkpoint on their way down
    pulled = _final_cost_and_pull(ref, pull_outputs, progress)
    made = ref.made if ref.made is not None else backend.legacy_made(ref)
    teardown(made, lambda m: backend.remove(ref, m))
    return pulled


def _final_cost_and_pull(ref: TaskRef, pull_outputs: bool, progress: bool) -> int:
    with contextlib.ExitStack() as held:
        try:  # k8s: one transfer pod for the cost's read and the pull, not one each
            held.enter_context(session(ref))
        except Exception as exc:  # each step opens its own and says what fails
            log.debug("no shared bucket session for delete: %s", exc)
        return _cost_then_pull(ref, pull_outputs, progress)


def _cost_then_pull(ref: TaskRef, pull_outputs: bool, progress: bool) -> int:
    final_cost(ref)
    pulled = 0
    if pull_outputs and ref.output and ref.workdir:
        try:
            pulled = pull(ref, progress=progress)
        except NotFound as exc:
            # Only a bucket that is really gone (an earlier delete got past this point)
            # may skip the pull; a NotFound from anything else (a file that cannot be
            # written here) keeps everything.
            if _storage_exists(ref):
                raise IterativeError(
                    f"could not bring {ref.output!r} home ({exc}); nothing was "
                    "removed: fix the cause and run delete again"
                ) from exc
            pulled = 0
        except TransferError as exc:
            raise IterativeError(
                f"could not bring {ref.output!r} home ({exc}); nothing was "
                "removed: fix the cause and run delete again"
            ) from exc
    return pulled


def _storage_exists(ref: TaskRef) -> bool:
    """Does the task's bucket (or folder in a container) still hold anything? (Only on
    delete's rare NotFound path: a listing of everything.)"""
    # Through `bucket`, as the workstation reaches it: on k8s `ref.remote` is the pods'
    # own path, which listed here would be empty and read as gone.
    try:
        with bucket(ref) as rclone:
            return bool(rclone.list(rclone.remote.path(), recursive=True))
    except NotFound:  # k8s: the volume itself is gone
        return False


def final_cost(ref: TaskRef) -> cost.Spend | None:
    """The task's spend once its machines are stopped, logged (delete prints it)."""
    try:
        spent = read(ref, with_logs=False).cost
    except Exception as exc:  # a figure must never stop a delete (the bucket may be gone)
        log.debug("no final cost: %s", exc)
        return None
    if spent is not None and spent.boots:
        log.info("%s: %s", ref.task_id, spent.summary())
    return spent


def exists(ref: TaskRef) -> bool:
    """Is the task's bucket still there (its definition is the last thing delete removes)?"""
    with bucket(ref) as rclone:
        return any(e["Path"] == TASK_FILE for e in rclone.list(rclone.remote.path()))


def update(ref: TaskRef, spec: TaskSpec) -> TaskRef:
    """Apply what changes without new machines: output, and exclude for later boots."""
    new = replace(ref, output=spec.storage.output)
    with bucket(new) as rclone:
        rclone.write(rclone.remote.path(TASK_FILE), task_definition(spec, new))
    return new
