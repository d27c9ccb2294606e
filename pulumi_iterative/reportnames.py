"""A boot's report carried in its object's name, so status is one listing at any scale.

Each write of a boot's report is a new object

    status/<machine>/<n>;state=running;started=1764750000.12;restarts=0;gen=3;...json

where `<n>` counts the boot's writes (the highest is current; the agent deletes
the one before), the name holds every field status needs (values percent-encoded,
times in seconds with two decimals), and the body is the whole report as JSON,
for reading by hand. A listing of `status/` (one request per 1,000 objects on a
bucket) is then every boot's status; a body is read only when its name had to be
cut to fit (a long reason or instance id: `cut=1`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from .records import BootReport, StopMarker
from .storage import STATUS, Rclone, read_json_objects

NAME_LIMIT = 240  # bytes in the last path part: under every file system's 255 and S3's 1024
FIELDS = (  # BootReport field -> key in the name
    ("state", "state"),
    ("exit_code", "exit"),
    ("started", "started"),
    ("finished", "finished"),
    ("restarts", "restarts"),
    ("generation", "gen"),
    ("updated", "updated"),
    ("checkpointed", "ckpt"),
    ("launched", "launched"),
    ("machine_type", "type"),
    ("instance", "inst"),
    ("reason", "why"),
    ("notice", "note"),
)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return quote(str(v), safe="")


def object_name(report: BootReport, n: int) -> str:
    """The report's object path below status/."""
    parts = [f"{n:06d}"]
    for attr, key in FIELDS:
        v = getattr(report, attr)
        if v is None or v == "":
            continue
        parts.append(f"{key}={_value(v)}")
    name = ";".join(parts) + ".json"
    if len(name.encode()) > NAME_LIMIT:  # keep what fits; the body has the rest
        keep = [p for p in parts if not p.startswith(("why=", "inst=", "note="))] + ["cut=1"]
        name = ";".join(keep) + ".json"
    return f"{report.machine}/{name}"


def body(report: BootReport) -> bytes:
    return json.dumps(report.to_dict(), sort_keys=True).encode() + b"\n"


def parse(path: str) -> tuple[str, int, BootReport, bool] | None:
    """(machine, write number, the report the name holds, cut) for `<machine>/<name>`."""
    machine, _, name = path.partition("/")
    if not name.endswith(".json") or "/" in name:
        return None
    fields = name[: -len(".json")].split(";")
    try:
        n = int(fields[0])
        index_s, _, boot = machine.partition("-")
        index = int(index_s)
    except ValueError:
        return None
    values: dict[str, str] = {}
    for f in fields[1:]:
        key, _, value = f.partition("=")
        values[key] = unquote(value)
    data: dict[str, Any] = {"machine": machine, "index": index, "boot": boot}
    for attr, key in FIELDS:
        if key in values:
            data[attr] = values[key]
    try:
        report = BootReport.from_dict(data)
    except (TypeError, ValueError):
        return None
    return machine, n, report, values.get("cut") == "1"


def newest(paths: Iterable[str]) -> dict[str, tuple[str, BootReport, bool]]:
    """machine -> (path, report, cut) of its highest-numbered report object."""
    best: dict[str, tuple[int, str, BootReport, bool]] = {}
    for path in paths:
        got = parse(path)
        if got is None:
            continue
        machine, n, report, cut = got
        if machine not in best or n > best[machine][0]:
            best[machine] = (n, path, report, cut)
    return {m: (p, r, c) for m, (_, p, r, c) in best.items()}


def read_all(rclone: Rclone) -> tuple[list[BootReport], StopMarker | None]:
    """Every boot's newest report, from one listing of status/, plus a read of the few
    whole objects there: a stop marker, an older agent's report, a report whose name
    was cut. And the newest stop marker, if the task was stopped."""
    folder = rclone.remote.path(STATUS)
    listed = [e["Path"] for e in rclone.list(folder, recursive=True)]
    named = newest(p for p in listed if "/" in p)
    whole = sorted(p for p in listed if "/" not in p and p.endswith(".json"))
    whole += sorted(path for path, _, cut in named.values() if cut)
    found = read_json_objects(rclone.cat_many(folder, whole)) if whole else []
    stops = [StopMarker.from_dict(r) for r in found if StopMarker.is_one(r)]
    boots = {r.machine: r for _, r, cut in named.values() if not cut}
    for r in found:
        if not StopMarker.is_one(r):
            report = BootReport.from_dict(r)
            named_one = boots.get(report.machine)
            if named_one is None or whole_wins(report, named_one):
                boots[report.machine] = report
    return [boots[m] for m in sorted(boots)], (stops[-1] if stops else None)


def whole_wins(whole: BootReport, named: BootReport) -> bool:
    """A whole object beside a boot's named reports is an older agent's report, or the
    one the bootstrap stores when this boot's agent died: the later word wins.

    Compared at the precision a name keeps (two decimals), ties to the whole object: the
    bootstrap's crash report repeats the newest named report's `updated`, which that
    report's name rounds (up as often as down), and adds its own `finished`, which may
    be only milliseconds later (or whole seconds, `date +%s`, where `%N` is missing):
    within the rounding, the dead agent's rounded-up `running` must not win."""
    return _last_word(whole) >= _last_word(named)


def _last_word(report: BootReport) -> float:
    return round(max(report.finished or 0.0, report.updated or 0.0), 2)
