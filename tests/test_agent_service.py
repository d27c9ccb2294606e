"""The agent as its own systemd unit on a real machine (issue 9, point 8).

Simulators cannot run systemd, so the rendered unit is a golden file, and the
bootstrap is checked to install it only where the backend asks for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pulumi_iterative.agent.bootstrap import STOP_TIMEOUT, Install, render_bootstrap, render_unit
from pulumi_iterative.records import BootConfig

GOLDEN = Path(__file__).parent / "golden" / "agent.service"


def test_unit_matches_golden() -> None:
    text = render_unit("train-abcdefgh12") + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} after a review"


def test_unit_stops_the_agent_with_time_for_a_last_checkpoint() -> None:
    lines = render_unit("t").splitlines()
    assert "After=network-online.target" in lines  # stopped before the network goes
    assert "KillMode=mixed" in lines  # SIGTERM to the supervisor first, not to everyone
    assert f"TimeoutStopSec={STOP_TIMEOUT}" in lines and STOP_TIMEOUT >= 120
    assert "Restart=no" in lines  # a dead agent ends the machine, it is not restarted


def test_only_a_backend_that_asks_gets_the_service() -> None:
    config = BootConfig.from_dict(
        {"task_id": "t-1", "cloud": "aws", "version": "0.1.0", "remote": {"root": "r", "env": {}}}
    )
    with_service = render_bootstrap(config, Install(python="/usr/bin/python3", service=True))
    without = render_bootstrap(config, Install(python="/usr/bin/python3"))
    assert "  if true && [ -z" in with_service and "  if false && [ -z" in without
    assert "pulumi-iterative-agent.service" in with_service
