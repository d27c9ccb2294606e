"""Resource ids, ARM's error, and the clock, shared by the fake Resource Manager's parts."""

from __future__ import annotations

from datetime import datetime, timezone


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def split_id(path: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    """A resource path -> (scope, namespace, type, [(type segment, name), ...]).

    `/subscriptions/s/resourceGroups/g/providers/NS/t1/n1/t2/n2` ->
    ("/subscriptions/s/resourceGroups/g", "NS", "t1/t2", [("t1","n1"), ("t2","n2")]).
    An extension resource's scope is everything before its own `/providers/`.
    """
    parts = path.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return "/" + "/".join(parts), "", "", []
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    scope = "/" + "/".join(parts[:at])
    namespace = parts[at + 1] if at + 1 < len(parts) else ""
    rest = parts[at + 2 :]
    pairs = [(rest[i], rest[i + 1] if i + 1 < len(rest) else "") for i in range(0, len(rest), 2)]
    return scope, namespace, "/".join(t for t, _ in pairs), pairs


def type_of(path: str) -> str:
    _, namespace, type_path, _ = split_id(path)
    return f"{namespace}/{type_path}"
