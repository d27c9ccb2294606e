"""The command line: the task lifecycle without Pulumi.

    pulumi-iterative run task.yaml          create, follow logs, pull outputs, delete
    pulumi-iterative price task.yaml        what it would cost (no cloud call)
    pulumi-iterative create|status|logs|list|pull|stop|delete ...
    pulumi-iterative checkpoint             on a task's machine: a consistency point

Inputs are the resource's arguments, from a small YAML/TOML task file, flags, or
both (flags win). Errors are one clear line with the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cost, lifecycle, registry
from .arguments import ARGUMENTS
from .errors import IterativeError, SpecError
from .spec import TaskSpec, parse_spec
from .status import TaskStatus
from .task import TaskRef, task_name

FOLLOW_POLL = 2.0


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not key:
            raise IterativeError(f"{flag} {item!r}: expected NAME=VALUE (or NAME to inherit)")
        out[key] = value if sep else ""
    return out


def _load_task_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise IterativeError(f"task file {path} not found")
    text = file.read_text()
    try:
        if file.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise IterativeError(f"task file {path} is not valid YAML/TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise IterativeError(f"task file {path} must be a mapping of task arguments")
    return data


def _spec_from_args(args: argparse.Namespace) -> TaskSpec:
    """The task file's arguments, then the flags over them: a scalar flag replaces the
    file's value, a map flag adds entries, a list flag adds items."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if args.task_file:
        raw = _load_task_file(args.task_file)
        base = Path(args.task_file).resolve().parent  # a task file's paths are its own
    storage = dict(raw.get("storage") or {})
    for arg in ARGUMENTS:
        given = getattr(args, arg.name, None)
        if arg.flag == "-" or given is None or given == []:
            continue
        group = storage if arg.group == "storage" else raw
        if arg.kind == "map":
            given = {**(group.get(arg.field) or {}), **_key_values(given, arg.cli_flag)}
        elif arg.kind == "list":
            given = list(group.get(arg.field) or []) + given
        elif arg.kind == "text" and given.startswith("@"):
            given = Path(given[1:]).read_text()
        group[arg.field] = given
        if arg.name == "storage.workdir":
            base = Path.cwd()  # a path typed in the shell is the shell's
    if storage:
        raw["storage"] = storage
    if args.task_file and not raw.get("name"):
        raw["name"] = task_name(Path(args.task_file).stem)  # train.yaml: train-...
    return parse_spec(raw, base_dir=base)


_TYPES = {"int": int, "number": float}
_METAVARS = {"--env": "NAME[=VALUE]", "--secret-env": "NAME[=VALUE]", "--exclude": "PATTERN"}


def _add_task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_file", nargs="?", help="YAML or TOML file with the task's arguments")
    for arg in ARGUMENTS:
        if arg.flag == "-":
            continue
        text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", arg.help).replace("`", "")
        text = re.sub(r"\*\*(\w[^*]*)\*\*", r"\1", text).replace("%", "%%")
        if arg.kind == "text":
            text += " (the text, or @file)"
        if arg.kind in ("map", "list"):
            p.add_argument(
                arg.cli_flag,
                dest=arg.name,
                action="append",
                metavar=_METAVARS.get(arg.cli_flag, "NAME=VALUE"),
                help=text,
            )
        else:
            p.add_argument(
                arg.cli_flag,
                dest=arg.name,
                type=_TYPES.get(arg.kind),
                metavar=arg.field.upper(),
                help=text,
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulumi-iterative",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "create, follow logs, pull outputs, delete"),
        ("create", "create and start a task, print its id"),
        ("price", "what the task would cost, from the price snapshot (no cloud call)"),
    ):
        p = sub.add_parser(name, help=text)
        _add_task_flags(p)
        if name == "create":
            p.add_argument(
                "--dry-run", action="store_true", help="check the task and print its estimate"
            )
    for name, text in (
        ("status", "show a task's status"),
        ("stop", "stop the machines"),
        ("delete", "pull outputs, remove everything"),
        ("pull", "bring outputs into the workdir"),
        ("logs", "print the logs"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "task_id",
            metavar="TASK",
            help="a task id from this workstation's list, or the task's `ref` output as a "
            "JSON file (`-` reads it from stdin), e.g. from `pulumi stack output ref --json`",
        )
        if name == "status":
            p.add_argument("--json", action="store_true")
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true")
        if name == "delete":
            p.add_argument("--no-pull", action="store_true", help="do not bring outputs home")
        if name == "pull":
            p.add_argument("--to", help="folder to pull into (default: the task's workdir)")
    sub.add_parser("list", help="tasks created from this workstation")
    sub.add_parser("checkpoint", help="on a task's machine: make the workdir durable now")
    return parser


def _print_status(ref: TaskRef, status: TaskStatus) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items())) or "no machines"
    print(f"{ref.task_id}  {ref.cloud}  {status.state.value}  ({counts})")
    for m in status.machines:
        code = "" if m.exit_code is None else f" exit {m.exit_code}"
        reason = f"  {m.reason}" if m.reason else ""
        print(
            f"  {m.machine:<16} index {m.index if m.index is not None else '-':<4} "
            f"{m.state.value}{code}{reason}"
        )
    if status.restarts:
        print(
            "  restarts: "
            + ", ".join(f"index {i}: {n}" for i, n in sorted(status.restarts.items()))
        )
    if status.cost is not None:
        _print_cost(status.cost)


def _print_cost(spent: cost.Spend) -> None:
    print("  " + spent.summary())
    for b in spent.boots:
        where = f" {b.zone}" if b.zone else ""
        index = b.index if b.index is not None else "-"
        print(
            f"    {b.machine:<16} index {index:<4} {b.type}{where}  "
            f"{cost.duration(b.seconds)} ({b.timed_by} times)  {cost.money(b.cost, spent.currency)}"
        )
    if len(spent.per_index) > 1:
        print(
            "    per index: "
            + ", ".join(f"{i}: {cost.money(c, spent.currency)}" for i, c in spent.per_index.items())
        )


def _print_estimate(spec: Any) -> None:
    found = cost.estimate(spec)
    for line in found.lines():
        print(line)
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def follow(ref: TaskRef, out: Any = sys.stdout) -> TaskStatus:
    """Print new log lines of every machine until the task is done."""
    with lifecycle.session(ref):  # k8s: one transfer pod for every poll, not one each
        return _follow(ref, out)


def _follow(ref: TaskRef, out: Any) -> TaskStatus:
    seen: dict[str, int] = {}  # bytes printed per machine: only newer segments are fetched
    partial: dict[str, bytes] = {}  # a line not finished yet
    told = _Progress(out)
    while True:
        status = lifecycle.read(ref, with_logs=False)
        told.show(status)
        for machine, new in lifecycle.new_log_bytes(ref, seen).items():
            data = partial.pop(machine, b"") + new
            head, sep, rest = data.rpartition(b"\n")
            if rest and not status.done:
                partial[machine] = rest
                data = head + sep
            for line in data.decode(errors="replace").splitlines():
                print(f"[{machine}] {line}", file=out)
        out.flush()
        if status.done:
            return status
        time.sleep(FOLLOW_POLL)


class _Progress:
    """What `follow` says besides logs: each change of the task's state and each new
    event (a machine launched, evicted, unschedulable...), so a task that waits says why."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.state = ""
        self.events: set[tuple[float, str, str, str]] = set()

    def show(self, status: TaskStatus) -> None:
        for e in status.events:
            key = (e.time, e.kind, e.machine, e.message)
            if key in self.events:
                continue
            self.events.add(key)
            when = time.strftime("%H:%M:%S", time.localtime(e.time))
            print(f"[event] {when} {e.machine or '-'} {e.kind}: {e.message}", file=self.out)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items()))
        state = f"{status.state.value} ({counts})" if counts else status.state.value
        if state != self.state:
            self.state = state
            print(f"[task] {state}", file=self.out)


# What cancels `run`: Ctrl-C, a CI system cancelling the job, a closed terminal.
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Cancelled(BaseException):
    """`run` was told to stop by a signal (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Cancel:
    """Turns CANCEL_SIGNALS into Cancelled in the main thread; while `deferred`, only
    notes the first (a create cut in half would leave what it made behind)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self.old = {s: signal.signal(s, self._handle) for s in CANCEL_SIGNALS}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.deferred:
            raise Cancelled(signum)
        _say("stopping once the task is created, then cleaning up")

    def check(self) -> None:
        if self.signum is not None:
            raise Cancelled(self.signum)

    @staticmethod
    def ignore() -> None:
        """From here on cleanup runs to its end: a second signal must not half-delete."""
        for s in CANCEL_SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        for s, handler in self.old.items():
            signal.signal(s, handler)


def _say(message: str) -> None:
    """A note for a human, on stderr; a closed terminal (SIGHUP) must not stop cleanup."""
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def _progress() -> bool:
    """rclone's transfer meter only for a human watching (stderr is a terminal)."""
    return sys.stderr.isatty()


def _create(spec: TaskSpec, *, progress: bool = False) -> TaskRef:
    return registry.remembered(
        lambda on_prepared: lifecycle.create(spec, progress=progress, on_prepared=on_prepared)
    )


def _delete(ref: TaskRef, *, pull_outputs: bool = True, progress: bool = False) -> int:
    pulled = lifecycle.delete(ref, pull_outputs=pull_outputs, progress=progress)
    registry.forget_quietly(ref.task_id)
    return pulled


def _find(task: str) -> TaskRef:
    """A task by id (this workstation's list) or by its `ref` output (any workstation)."""
    if task != "-" and not task.endswith(".json"):
        return registry.load(task)
    try:
        text = sys.stdin.read() if task == "-" else Path(task).read_text()
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("ref"), dict):
            data = data["ref"]  # the whole `pulumi stack output --json`
        return TaskRef.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IterativeError(
            f"{task}: expected a task's `ref` output as JSON "
            f"(`pulumi stack output ref --json`): {exc}"
        ) from exc


def _run(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    _print_estimate(spec)
    cancel = _Cancel()
    try:
        cancel.deferred = True
        ref = _create(spec, progress=_progress())
        cancel.deferred = False
        try:
            cancel.check()
            print(f"created {ref.task_id}; following its logs (Ctrl-C stops and cleans up)")
            status = follow(ref)
        except Cancelled as stop:
            cancel.ignore()
            name = signal.Signals(stop.signum).name
            _say(f"\n{name}: stopping; the machines take a last checkpoint, then outputs come home")
            pulled = _delete(ref)
            if ref.output:
                _say(f"brought {pulled} file(s) of {ref.output!r} home into {ref.workdir}")
            return 128 + stop.signum
        _print_status(ref, status)
        pulled = _delete(ref, progress=_progress())
        if ref.output:
            print(f"brought {pulled} file(s) of {ref.output!r} home into {ref.workdir}")
        return status.exit_code
    finally:
        cancel.restore()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO
        if args.verbose or args.command in ("run", "create", "delete")
        else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except SpecError as exc:
        for e in exc.errors:
            print(f"error: {e.field}: {e.message}", file=sys.stderr)
        return 2
    except IterativeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "run":
        return _run(args)
    if cmd == "price":
        _print_estimate(_spec_from_args(args))
        return 0
    if cmd == "create":
        spec = _spec_from_args(args)
        if args.dry_run:
            _print_estimate(spec)
            return 0
        ref = _create(spec, progress=_progress())
        print(ref.task_id)  # the only line on stdout: ID=$(pulumi-iterative create ...)
        return 0
    if cmd == "list":
        for ref in registry.all_refs():
            status = lifecycle.read(ref, with_logs=False)
            spent = status.cost
            figure = cost.money(spent.total, spent.currency) if spent and spent.boots else "-"
            print(
                f"{ref.task_id}  {ref.cloud:<6} {status.state.value:<10} "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(ref.created))}  {figure}"
            )
        return 0
    if cmd == "checkpoint":
        from .agent.client import checkpoint

        gen = checkpoint()
        if gen is None:
            print(
                "not on a task's machine (TASK_AGENT_SOCKET unset): nothing to do", file=sys.stderr
            )
        else:
            print(f"generation {gen} is durable")
        return 0
    ref = _find(args.task_id)
    if cmd == "status":
        status = lifecycle.read(ref, with_logs=False)
        if args.json:
            print(json.dumps(status.to_dict(), indent=2))
        else:
            _print_status(ref, status)
        return 0
    if cmd == "logs":
        if args.follow:
            follow(ref)
        else:
            for machine, text in lifecycle.fetch_logs(ref).items():
                for line in text.splitlines():
                    print(f"[{machine}] {line}")
        return 0
    if cmd == "pull":
        n = lifecycle.pull(ref, args.to, progress=_progress())
        print(f"brought {n} file(s) of {ref.output!r} home")
        return 0
    if cmd == "stop":
        lifecycle.stop(ref)
        print(f"stopped {ref.task_id}; storage kept (delete removes it)")
        return 0
    if cmd == "delete":
        n = _delete(ref, pull_outputs=not args.no_pull, progress=_progress())
        print(f"deleted {ref.task_id}" + (f"; brought {n} output file(s) home" if n else ""))
        return 0
    raise IterativeError(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
