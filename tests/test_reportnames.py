"""Which report of a boot status takes: its newest named one, or a whole object beside it."""

from __future__ import annotations

import math

from pulumi_iterative import reportnames
from pulumi_iterative.records import BootReport

SECOND = 1_796_298_581.0


def _as_listed(report: BootReport) -> BootReport:
    """A named report as status reads it back: from its object's name."""
    parsed = reportnames.parse(reportnames.object_name(report, 3))
    assert parsed is not None
    return parsed[2]


def test_a_crash_report_within_the_second_of_the_last_report_wins() -> None:
    """The agent reported at .146 (its name rounds it up to .15) and died at once: the
    bootstrap's crash report (updated .146, finished 2 ms later, or at the whole second
    where `date` has no `%N`) is still the later word."""
    running = BootReport("0-ab12cd34", 0, "ab12cd34", state="running", started=SECOND - 9)
    running = running.with_(updated=SECOND + 0.146)
    crashed = running.with_(state="failed", reason="the agent died (exit 137)")
    named = _as_listed(running)
    for finished in (SECOND + 0.148, float(math.floor(running.updated or 0))):
        assert reportnames.whole_wins(crashed.with_(finished=finished), named)


def test_a_whole_report_older_than_the_named_one_loses() -> None:
    old = BootReport("0-ab12cd34", 0, "ab12cd34", state="failed", finished=SECOND - 5)
    newer = old.with_(state="running", finished=None, updated=SECOND)
    assert not reportnames.whole_wins(old, _as_listed(newer))
