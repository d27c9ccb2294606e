"""The command line: the task lifecycle without Pulumi.

    pulumi-iterative run task.yaml          create, follow logs, pull outputs, delete
    pulumi-iterative create|status|logs|list|pull|stop|delete ...
    pulumi-iterative checkpoint             on a task's machine: a consistency point

Inputs are the resource's arguments, from a small YAML/TOML task file, flags, or
both (flags win). Errors are one clear line with the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import lifecycle, registry
from .errors import IterativeError, SpecError
from .spec import parse_spec
from .status import TaskStatus
from .task import TaskRef

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


def _spec_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if args.task_file:
        raw = _load_task_file(args.task_file)
        base = Path(args.task_file).resolve().parent  # a task file's paths are its own
    storage = dict(raw.get("storage") or {})
    flags = {
        "cloud": args.cloud,
        "region": args.region,
        "machine": args.machine,
        "disk_size": args.disk_size,
        "spot": args.spot,
        "image": args.image,
        "parallelism": args.parallelism,
        "timeout": args.timeout,
        "name": args.name,
        "permission_set": args.permission_set,
        "preempt_interval": args.preempt_interval,
        "preempt_notice": args.preempt_notice,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    if args.script:
        raw["script"] = (
            Path(args.script[1:]).read_text() if args.script.startswith("@") else args.script
        )
    for key, flag in (
        ("environment", args.env),
        ("secret_environment", args.secret_env),
        ("tags", args.tag),
    ):
        if flag:
            raw[key] = {**(raw.get(key) or {}), **_key_values(flag, f"--{key}")}
    if args.workdir is not None:
        storage["workdir"] = args.workdir
        base = Path.cwd()
    for key in ("output", "container"):
        if getattr(args, key) is not None:
            storage[key] = getattr(args, key)
    if args.exclude:
        storage["exclude"] = list(storage.get("exclude") or []) + args.exclude
    if args.checkpoint_interval is not None:
        storage["checkpoint_interval"] = args.checkpoint_interval
    if storage:
        raw["storage"] = storage
    return parse_spec(raw, base_dir=base)


def _add_task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_file", nargs="?", help="YAML or TOML file with the task's arguments")
    p.add_argument("--cloud", help="local, aws, gcp, azure or k8s")
    p.add_argument("--region")
    p.add_argument("--machine", help="s, m, l, xl, m+t4, ... or a native type")
    p.add_argument("--disk-size", type=int)
    p.add_argument("--spot", type=float, help="-1 on-demand, 0 spot at market, >0 max price")
    p.add_argument("--image")
    p.add_argument("--parallelism", type=int)
    p.add_argument("--timeout", help="seconds or a duration like 2h30m")
    p.add_argument("--script", help="the script text, or @file")
    p.add_argument("--env", action="append", metavar="NAME[=VALUE]")
    p.add_argument("--secret-env", action="append", metavar="NAME[=VALUE]")
    p.add_argument("--workdir")
    p.add_argument("--output")
    p.add_argument("--exclude", action="append", metavar="PATTERN")
    p.add_argument("--container")
    p.add_argument("--checkpoint-interval", type=float)
    p.add_argument("--permission-set")
    p.add_argument("--tag", action="append", metavar="NAME=VALUE")
    p.add_argument("--name")
    p.add_argument(
        "--preempt-interval", type=float, help="local cloud: seconds between rehearsed preemptions"
    )
    p.add_argument(
        "--preempt-notice",
        type=float,
        help="local cloud: seconds of SIGTERM notice before the kill (0: none)",
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
    ):
        _add_task_flags(sub.add_parser(name, help=text))
    for name, text in (
        ("status", "show a task's status"),
        ("stop", "stop the machines"),
        ("delete", "pull outputs, remove everything"),
        ("pull", "bring outputs into the workdir"),
        ("logs", "print the logs"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("task_id")
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


def follow(ref: TaskRef, out: Any = sys.stdout) -> TaskStatus:
    """Print new log lines of every machine until the task is done."""
    seen: dict[str, int] = {}  # bytes printed per machine: only newer segments are fetched
    partial: dict[str, bytes] = {}  # a line not finished yet
    while True:
        status = lifecycle.read(ref, with_logs=False)
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


def _run(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    ref = lifecycle.create(spec, progress=True)
    print(f"created {ref.task_id}; following its logs (Ctrl-C stops and cleans up)")
    try:
        status = follow(ref)
    except KeyboardInterrupt:
        print("\nstopping: the machines take a last checkpoint, then outputs come home")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not half-delete
        lifecycle.delete(ref, progress=True)
        return 130
    _print_status(ref, status)
    pulled = lifecycle.delete(ref, progress=True)
    if ref.output:
        print(f"brought {pulled} file(s) of {ref.output!r} home into {ref.workdir}")
    return status.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO
        if args.verbose or args.command in ("run", "create")
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
    if cmd == "create":
        ref = lifecycle.create(_spec_from_args(args), progress=True)
        print(ref.task_id)
        return 0
    if cmd == "list":
        for ref in registry.all_refs():
            state = lifecycle.read(ref, with_logs=False).state.value
            print(
                f"{ref.task_id}  {ref.cloud:<6} {state:<10} "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(ref.created))}"
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
    ref = registry.load(args.task_id)
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
        n = lifecycle.pull(ref, args.to, progress=True)
        print(f"brought {n} file(s) of {ref.output!r} home")
        return 0
    if cmd == "stop":
        lifecycle.stop(ref)
        print(f"stopped {ref.task_id}; storage kept (delete removes it)")
        return 0
    if cmd == "delete":
        n = lifecycle.delete(ref, pull_outputs=not args.no_pull, progress=True)
        print(f"deleted {ref.task_id}" + (f"; brought {n} output file(s) home" if n else ""))
        return 0
    raise IterativeError(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
