"""The error types every layer shares.

Each carries what a user needs to act: the field or step that failed and the fix.
Nothing here imports Pulumi or a cloud SDK.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

P = ParamSpec("P")


class IterativeError(Exception):
    """Base of every error this package raises on purpose (never a bare traceback)."""


@dataclass(frozen=True)
class FieldError:
    """One invalid input: which field, what is wrong, and how to fix it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(IterativeError):
    """The task inputs are invalid; `errors` names every bad field at once."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class NotFound(IterativeError):
    """A cloud object (or task) does not exist. Delete paths treat it as done."""


def missing_is_done(call: Callable[P, object]) -> Callable[P, None]:
    """A cloud's `call` made into its `gone`: a delete where NotFound means done."""

    def gone(*args: P.args, **kwargs: P.kwargs) -> None:
        """A delete where "not found" means done."""
        with contextlib.suppress(NotFound):
            call(*args, **kwargs)

    return gone


class StepFailed(IterativeError):
    """A creation step failed; the undos of the steps before it have run."""

    def __init__(
        self, step: str, index: int, total: int, cause: BaseException, undo_errors: list[str]
    ) -> None:
        self.step, self.index, self.total, self.cause = step, index, total, cause
        self.undo_errors = undo_errors
        msg = f"step [{index}/{total}] {step} failed: {cause}"
        if undo_errors:
            msg += "; cleanup also failed for: " + "; ".join(undo_errors)
        else:
            msg += " (everything created before it was removed)"
        super().__init__(msg)


class CreateCancelled(IterativeError):
    """Create was cancelled between steps (the provider is shutting down); the steps
    before it were undone."""

    def __init__(self, step: str, index: int, total: int, undo_errors: list[str]) -> None:
        self.step, self.index, self.total, self.undo_errors = step, index, total, undo_errors
        msg = f"create was cancelled before step [{index}/{total}] {step}"
        if undo_errors:
            msg += "; cleanup also failed for: " + "; ".join(undo_errors)
            msg += " (`pulumi-iterative delete <task id>` retries it)"
        else:
            msg += " (everything created before it was removed)"
        super().__init__(msg)


class TeardownFailed(IterativeError):
    """Some undos failed; every other undo still ran. Re-running is safe."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(
            "could not remove everything: " + "; ".join(errors) + " (re-run delete to retry)"
        )


class TransferError(IterativeError):
    """rclone failed; carries its last stderr lines."""


class LeftGroup(IterativeError):
    """This machine left its group on purpose (surplus): nothing failed, nothing to run."""
