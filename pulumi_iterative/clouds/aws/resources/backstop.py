"""The deadline backstop: a scheduled action that takes the group to zero."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from ....errors import NotFound
from ..api import Aws, call
from ..names import Names
from .group import describe_group

log = logging.getLogger(__name__)


MIN_LEAD = 120.0  # AWS refuses a start time in the past; a long upload can put it there


def backstop_time(deadline: float, now: float) -> float:
    """When the backstop acts: at the deadline, but never before it can be scheduled."""
    return max(deadline, now + MIN_LEAD)


def put_backstop(aws: Aws, names: Names, deadline: float) -> None:
    """Shortly after `deadline` (computed now, as the action is put), the group goes to
    zero machines whatever the agents do."""
    when = backstop_time(deadline, time.time())
    call(
        aws.autoscaling.put_scheduled_update_group_action,
        AutoScalingGroupName=names.group,
        ScheduledActionName=names.backstop,
        StartTime=datetime.fromtimestamp(when, tz=timezone.utc),
        MinSize=0,
        MaxSize=0,
        DesiredCapacity=0,
    )


def delete_backstop(aws: Aws, names: Names) -> None:
    describe_group(aws, names)  # no group: its scheduled actions went with it
    found = call(
        aws.autoscaling.describe_scheduled_actions,
        AutoScalingGroupName=names.group,
        ScheduledActionNames=[names.backstop],
    )["ScheduledUpdateGroupActions"]
    if not found:
        raise NotFound(f"scheduled action {names.backstop}")
    call(
        aws.autoscaling.delete_scheduled_action,
        AutoScalingGroupName=names.group,
        ScheduledActionName=names.backstop,
    )
