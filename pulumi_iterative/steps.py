"""Creation as an ordered list of named steps, each with its undo.

One mechanism for every backend: when step k fails, the undos of steps k-1..1 run
in reverse, past their own errors, and the error names the failed step. Teardown
runs every undo the same way, treating NotFound as done, so it can be re-run
after any partial failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import NotFound, StepFailed, TeardownFailed

log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Step:
    """A named action and the action that reverses it (both idempotent)."""

    name: str
    do: Callable[[], object]
    undo: Callable[[], object] = _nothing


def run_steps(steps: list[Step]) -> None:
    """Run steps in order; on failure undo the finished ones and raise StepFailed."""
    total = len(steps)
    for i, step in enumerate(steps, start=1):
        log.info("[%d/%d] %s", i, total, step.name)
        try:
            step.do()
        except Exception as exc:
            # The failed step may have half-made its object: undo it too.
            undo_errors = _undo_all(reversed(steps[:i]))
            raise StepFailed(step.name, i, total, exc, undo_errors) from exc


def teardown(undos: Iterable[Step]) -> None:
    """Run every undo, keep going past errors, report them together."""
    errors = _undo_all(undos)
    if errors:
        raise TeardownFailed(errors)


def _undo_all(steps: Iterable[Step]) -> list[str]:
    errors: list[str] = []
    for step in steps:
        try:
            step.undo()
        except NotFound:
            pass
        except Exception as exc:
            log.warning("undo of %r failed: %s", step.name, exc)
            errors.append(f"{step.name}: {exc}")
    return errors
