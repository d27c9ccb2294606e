"""The workstation's list of tasks it created, so the CLI can find them by id."""

from __future__ import annotations

import contextlib
import json
import os

from .errors import IterativeError
from .paths import home
from .task import TaskRef, check_task_id


def save(ref: TaskRef) -> None:
    path = home() / "tasks"
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{ref.task_id}.json.tmp"
    tmp.write_text(json.dumps(ref.to_dict(), indent=1))
    os.replace(tmp, path / f"{ref.task_id}.json")


def load(task_id: str) -> TaskRef:
    check_task_id(task_id)
    path = home() / "tasks" / f"{task_id}.json"
    if not path.exists():
        raise IterativeError(
            f"no task {task_id} on this workstation; `pulumi-iterative list` shows yours"
        )
    return TaskRef.from_dict(json.loads(path.read_text()))


def all_refs() -> list[TaskRef]:
    path = home() / "tasks"
    if not path.is_dir():
        return []
    refs = []
    for f in sorted(path.glob("*.json")):
        try:
            refs.append(TaskRef.from_dict(json.loads(f.read_text())))
        except (ValueError, KeyError):
            continue
    return sorted(refs, key=lambda r: r.created)


def forget(task_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (home() / "tasks" / f"{task_id}.json").unlink()
