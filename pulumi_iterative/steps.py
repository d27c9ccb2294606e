"""Creation as an ordered list of named steps; teardown as the removal of what they made.

One mechanism for every backend. A step that makes a cloud object declares it (a
`Made` record) before it runs, so an object the step half-made is still known. When
step k fails, what steps k..1 made is removed, newest first, past errors, and the
error names the failed step. Teardown removes a task's records the same way,
treating NotFound as done, so it can be re-run after any partial failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .clouds.base import Made
from .errors import CreateCancelled, NotFound, StepFailed, TeardownFailed

log = logging.getLogger(__name__)

Remove = Callable[[Made], object]


@dataclass(frozen=True)
class Step:
    """A named, idempotent action and the object it makes (None: it makes nothing to undo,
    e.g. an upload into a bucket that a `Made` of its own already covers)."""

    name: str
    do: Callable[[], object]
    made: Made | None = None


def run_steps(
    steps: list[Step], remove: Remove, cancelled: Callable[[], bool] | None = None
) -> tuple[Made, ...]:
    """Run steps in order and return what they made; on failure remove it and raise.
    `cancelled` is asked before each step: when it says so, the steps left are not run
    and what was made is removed (CreateCancelled)."""
    total = len(steps)
    made: list[Made] = []
    for i, step in enumerate(steps, start=1):
        if cancelled is not None and cancelled():
            log.warning("[%d/%d] %s not started: create was cancelled", i, total, step.name)
            undo_errors = _remove_all(reversed(made), remove)
            raise CreateCancelled(step.name, i, total, undo_errors)
        log.info("[%d/%d] %s", i, total, step.name)
        if step.made is not None:
            made.append(step.made)
        try:
            step.do()
        except Exception as exc:
            undo_errors = _remove_all(reversed(made), remove)
            raise StepFailed(step.name, i, total, exc, undo_errors) from exc
        except BaseException:
            # Ctrl-C, a cancelled `pulumi up`, SystemExit: undo all the same, then go on
            # being interrupted.
            log.warning("[%d/%d] %s interrupted: removing what was made", i, total, step.name)
            _remove_all(reversed(made), remove)
            raise
    return tuple(made)


def teardown(made: Iterable[Made], remove: Remove) -> None:
    """Remove every record, newest first, keep going past errors, report them together."""
    errors = _remove_all(reversed(list(made)), remove)
    if errors:
        raise TeardownFailed(errors)


def _remove_all(made: Iterable[Made], remove: Remove) -> list[str]:
    errors: list[str] = []
    for record in made:
        try:
            remove(record)
        except NotFound:
            pass
        except Exception as exc:
            what = record.kind.replace("_", " ")
            log.warning("removing the %s failed: %s", what, exc)
            errors.append(f"remove {what}: {exc}")
    return errors
