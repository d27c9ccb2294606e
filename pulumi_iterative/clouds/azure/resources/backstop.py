"""The deadline backstop: an autoscale setting on the scale set whose fixed-date
profile sets capacity to 0 from the deadline on, whatever the agents do.

Azure has no scheduled action on a bare scale set; autoscale's fixed-date profile
is the cloud-side timer. The other profile (the default) has no rules and bounds
[0, parallelism], so outside the window autoscale changes nothing: machines that
leave the group are not brought back by it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ....errors import NotFound
from ..api import Azure, call, gone

WINDOW = timedelta(days=365)  # how long the zero profile stays in force after the deadline


def body(
    *, location: str, tags: dict[str, str], scale_set_id: str, parallelism: int, when: float
) -> dict[str, Any]:
    start = datetime.fromtimestamp(when, tz=timezone.utc).replace(microsecond=0)
    return {
        "location": location,
        "tags": tags,
        "properties": {
            "enabled": True,
            "targetResourceUri": scale_set_id,
            "profiles": [
                {
                    "name": "while the task runs",
                    "capacity": {
                        "minimum": "0",
                        "maximum": str(parallelism),
                        "default": str(parallelism),
                    },
                    "rules": [],
                },
                {
                    "name": "deadline",
                    "capacity": {"minimum": "0", "maximum": "0", "default": "0"},
                    "rules": [],
                    "fixedDate": {
                        "timeZone": "UTC",
                        "start": start.isoformat().replace("+00:00", "Z"),
                        "end": (start + WINDOW).isoformat().replace("+00:00", "Z"),
                    },
                },
            ],
        },
    }


def create(az: Azure, group: str, name: str, payload: dict[str, Any]) -> None:
    try:
        call(az.monitor.autoscale_settings.get, group, name)
        return
    except NotFound:
        pass
    call(
        az.monitor.autoscale_settings.create_or_update,
        group,
        name,
        payload,
        what=f"create autoscale setting {name}",
    )


def delete(az: Azure, group: str, name: str) -> None:
    gone(az.monitor.autoscale_settings.delete, group, name)
