"""Task ids and the reference a backend needs to find a task again.

Every cloud name derives from the task id, so nothing depends on remembering
cloud-assigned ids. Ids carry a checksum: a string that is not one of ours is
rejected before any cloud call.
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .clouds.base import Made
from .errors import IterativeError

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID = re.compile(
    r"^(?P<slug>[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?)-(?P<rand>[a-z0-9]{8})"
    r"(?P<check>[a-z0-9]{2})$"
)


def _checksum(body: str) -> str:
    n = zlib.crc32(body.encode())
    return _ALPHABET[n % 36] + _ALPHABET[(n // 36) % 36]


def task_name(text: str) -> str:
    """A valid task `name` made from any text (a Pulumi resource name, a file name):
    lowercase letters, digits and hyphens, at most 30; "task" when nothing is left."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:30].strip("-") or "task"


def new_task_id(name: str = "") -> str:
    """`<name>-<8 random><2 check>`: lowercase, at most 41 characters, bucket-name safe."""
    slug = task_name(name or "task")
    body = f"{slug}-{''.join(secrets.choice(_ALPHABET) for _ in range(8))}"
    return body + _checksum(body)


def check_task_id(value: str) -> str:
    m = _ID.match(value or "")
    if not m or _checksum(value[:-2]) != m.group("check"):
        raise IterativeError(f"{value!r} is not a task id; `pulumi-iterative list` shows yours")
    return value


REF_VERSION = 2  # 1: before `made` (its objects are derived by the backend's legacy_made)


@dataclass(frozen=True)
class TaskRef:
    """What finds a task again: id, cloud, where its bucket is, its budget, and what its
    create made (`made`, None in a state written before it was recorded)."""

    task_id: str
    cloud: str
    region: str
    remote: Mapping[str, Any]  # storage.Remote.to_dict(), non-secret
    parallelism: int
    created: float
    deadline: float
    workdir: str = ""
    output: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # the cloud's Place.to_dict()
    made: tuple[Made, ...] | None = None
    pricing: Mapping[str, Any] = field(default_factory=dict)  # cost.Pricing.to_dict()

    @property
    def backstop_at(self) -> float:
        """When the cloud-side backstop must stop the machines: the timeout's deadline, or
        sooner when the budget runs out first (every machine billing from create), early
        enough that the machines' shutdown is paid from the budget too."""
        from .cost import Pricing

        stop_by = Pricing.from_dict(self.pricing).stop_by_seconds()
        return self.deadline if stop_by is None else min(self.deadline, self.created + stop_by)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["remote"], d["extra"] = dict(self.remote), dict(self.extra)
        d["pricing"] = dict(self.pricing)
        d["version"] = REF_VERSION
        if self.made is None:
            del d["made"]
        else:
            d["made"] = [m.to_dict() for m in self.made]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRef:
        return cls(
            task_id=str(data["task_id"]),
            cloud=str(data["cloud"]),
            region=str(data["region"]),
            remote=dict(data["remote"]),
            parallelism=int(data["parallelism"]),
            created=float(data["created"]),
            deadline=float(data["deadline"]),
            workdir=str(data.get("workdir") or ""),
            output=str(data.get("output") or ""),
            extra=dict(data.get("extra") or {}),
            made=(
                tuple(Made.from_dict(m) for m in data["made"])
                if data.get("made") is not None
                else None
            ),
            pricing=dict(data.get("pricing") or {}),
        )
