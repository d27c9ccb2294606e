"""What a task costs, on every cloud: the spend across respawns, and the budget stop.

A cloud with no price list yet is skipped with the file to fill in; the local cloud,
free, rehearses with `notional_price`, and k8s, whose machines have no public price,
is given one the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pulumi_iterative import cost, lifecycle
from pulumi_iterative.agent.runner import KILL_GRACE
from pulumi_iterative.status import State
from tests.conformance.harness import Harness
from tests.conformance.test_conformance import done, wait_status

NOTIONAL = 3.6  # per machine-hour on the local cloud: 0.001 a second


def priced(harness: Harness, workdir: Path, script: str, **args: Any) -> tuple[dict, float]:
    """Extra arguments that give the task a price, and the hourly ceiling it bills at."""
    probe = harness.spec(workdir, script, **args)
    ceiling = cost.pricing_for(probe).ceiling
    if ceiling:
        return {}, ceiling
    if probe.cloud in ("local", "k8s"):  # free, or a cluster's own machines: no public price
        return {"notional_price": NOTIONAL}, NOTIONAL
    pytest.skip(f"no price known on {probe.cloud}: fill clouds/{probe.cloud}/prices.py")


def test_budget_stops_the_task_keeps_outputs_and_moves_the_backstop(
    harness: Harness, workdir: Path
) -> None:
    # The script takes its time to stop (it finishes its step on SIGTERM), as a training
    # loop saving its model does: the budget check must count that too.
    script = (
        "#!/bin/sh\nmkdir -p results\nn=0\ntrap 'sleep 4; exit 0' TERM\n"
        "while true; do n=$((n+1)); echo $n > results/n.txt; sleep 0.3; done\n"
    )
    extra, ceiling = priced(harness, workdir, script)
    probe = cost.pricing_for(harness.spec(workdir, script, **extra))
    # Seconds of one machine: the time to stop (the script's grace, the cloud's shutdown)
    # plus enough to boot on a loaded machine and run the script a while.
    lasts = cost.stop_horizon(probe, KILL_GRACE) + 25.0
    spec = harness.spec(
        workdir,
        script,
        timeout=3600,
        budget=ceiling * lasts / 3600,
        storage={"output": "results", "checkpoint_interval": 0},
        **extra,
    )
    ref = lifecycle.create(spec)
    # The backstop tells the machines to stop early enough to pay their shutdown too.
    assert ref.backstop_at == pytest.approx(ref.created + lasts - probe.stop_seconds)
    backstop = harness.backstop(ref)
    assert backstop is not None and ref.backstop_at <= backstop < ref.backstop_at + 120
    assert backstop < ref.deadline  # the budget is the nearer limit
    harness.start()
    status = done(harness, ref)
    assert status.state == State.BUDGET, harness.report()
    assert status.exit_code == 124
    (last,) = status.latest
    assert "budget" in last.reason
    # The check counted the time to stop (the script's grace, the final checkpoint, the
    # shutdown): the spend at the end, as the cloud times it, is within the budget.
    assert status.cost is not None and status.cost.final, status.cost
    assert status.cost.total is not None and 0 < status.cost.total <= spec.budget, status.cost
    lifecycle.delete(ref)
    # The final checkpoint kept what the script wrote before it was stopped.
    assert int((workdir / "results" / "n.txt").read_text()) > 0
    assert harness.leftovers(ref.task_id) == []


CHECKPOINTED = """#!/bin/sh
set -e
mkdir -p results
if [ "$TASK_RESUMED" = 0 ]; then
  echo "epoch 1" > results/progress.txt
  pulumi-iterative checkpoint >/dev/null
  echo "durable epoch 1"
  while true; do sleep 0.2; done
fi
echo "epoch 2" >> results/progress.txt
"""


def test_spend_covers_every_boot_and_what_preemption_cost(harness: Harness, workdir: Path) -> None:
    args: dict[str, Any] = {"spot": 0, "storage": {"output": "results", "checkpoint_interval": 0}}
    extra, _ = priced(harness, workdir, CHECKPOINTED, **args)
    ref = lifecycle.create(harness.spec(workdir, CHECKPOINTED, **args, **extra))
    harness.start()
    wait_status(
        harness, ref, lambda s: "durable epoch 1" in "".join(s.logs.values()), "the checkpoint"
    )
    harness.preempt(ref, 0)
    status = done(harness, ref)
    assert status.state == State.SUCCEEDED, harness.report()
    spent = status.cost
    assert spent is not None and spent.currency
    boots = {b.machine: b for b in spent.boots}
    assert {m.machine for m in status.machines if m.index == 0} <= set(boots)
    assert all(b.seconds > 0 and b.cost is not None for b in spent.boots)
    assert spent.total == pytest.approx(sum(b.cost or 0 for b in spent.boots))
    assert spent.per_index[0] == pytest.approx(
        sum(b.cost or 0 for b in spent.boots if b.index == 0)
    )
    # The preempted boot had made epoch 1 durable: that work was saved, not redone.
    (gone,) = [b for b in spent.boots if b.saved_seconds > 0]
    assert gone.lost_seconds >= 0 and spent.saved is not None and spent.saved > 0
    assert status.to_dict()["cost"]["total"] == pytest.approx(spent.total, abs=1e-6)
    lifecycle.delete(ref)
    assert harness.leftovers(ref.task_id) == []
