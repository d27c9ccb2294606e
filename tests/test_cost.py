"""What a task costs: prices from the snapshot, the estimate at preview, the spend from
boots, the budget's arithmetic. No cloud: the spend is fed the records a cloud gives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pulumi_iterative import cost
from pulumi_iterative.clouds.aws.prices import HOURLY
from pulumi_iterative.clouds.base import Price
from pulumi_iterative.errors import SpecError
from pulumi_iterative.records import BootReport
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import CloudMachine
from pulumi_iterative.task import TaskRef

SCRIPT = "#!/bin/sh\ntrue\n"


def spec(**kw):  # type: ignore[no-untyped-def]
    return parse_spec({"cloud": "aws", "script": SCRIPT, **kw}, check_paths=False)


def test_on_demand_spot_and_a_maximum_price_come_from_the_snapshot() -> None:
    on_demand, typical = HOURLY["us-east-1"]["g4dn.xlarge"]
    p = cost.pricing_for(spec(machine="m+t4"))
    assert (p.types, p.rate, p.basis, p.currency) == (
        ("g4dn.xlarge",),
        on_demand,
        "on-demand",
        "USD",
    )
    assert cost.pricing_for(spec(machine="m+t4", spot=0)).rate == typical
    # The market price is paid, capped by the maximum the user set.
    assert cost.pricing_for(spec(machine="m+t4", spot=typical / 2)).rate == typical / 2
    assert cost.pricing_for(spec(machine="m+t4", spot=typical * 2)).rate == typical
    # Live prices asked at create replace the snapshot's typical spot price.
    fresh = {"g4dn.xlarge": Price(None, 0.123)}
    live = cost.pricing_for(spec(machine="m+t4", spot=0), fresh, "live", "2026-12-03")
    assert (live.rate, live.source, live.date) == (0.123, "live", "2026-12-03")
    assert live.on_demand == {"g4dn.xlarge": on_demand}  # the list had no such figure
    # A spot-only list leaves an on-demand task on the snapshot, source and date too.
    kept = cost.pricing_for(spec(machine="m+t4"), fresh, "live", "2026-12-03")
    assert kept == cost.pricing_for(spec(machine="m+t4"))
    # A live on-demand figure prices an on-demand task.
    both = {"g4dn.xlarge": Price(0.5, 0.1)}
    assert cost.pricing_for(spec(machine="m+t4"), both, "live", "d").rate == 0.5
    # Fallback types are priced too; the ceiling is the dearest of them (budget math).
    m = cost.pricing_for(spec(machine="m"))
    assert m.types == ("m7i.2xlarge", "m6i.2xlarge", "m5.2xlarge")
    assert m.ceiling == max(HOURLY["us-east-1"][t][0] for t in m.types)


def test_a_price_not_in_the_snapshot_is_unknown_never_guessed() -> None:
    p = cost.pricing_for(spec(machine="xl+a100", region="eu-north"))
    assert not p.known and p.rate is None and p.ceiling is None
    (line,) = cost.estimate(spec(machine="xl+a100", region="eu-north")).lines()
    assert "p4d.24xlarge in eu-north-1: no price known" in line
    with pytest.raises(SpecError) as err:
        spec(machine="xl+a100", region="eu-north", budget=10)
    assert err.value.errors[0].field == "budget"
    assert "no price is known for p4d.24xlarge" in err.value.errors[0].message


def test_the_estimate_is_per_hour_times_parallelism_and_up_to_the_timeout() -> None:
    on_demand, _ = HOURLY["us-east-1"]["t3.medium"]
    found = cost.estimate(spec(machine="s", parallelism=3, timeout="2h"))
    assert found.hourly == pytest.approx(3 * on_demand)
    assert found.up_to_timeout == pytest.approx(6 * on_demand)
    assert "3 x t3.medium in us-east-1" in found.lines()[0]
    assert "2h timeout" in found.lines()[0] and "aws/vms.csv @ e385a0d3 of " in found.lines()[0]
    assert found.warnings == ()
    # A budget that runs out before the timeout says when: earlier by the time to stop
    # (AWS: 30 s), which the machines bill too.
    budget = 3 * on_demand * 0.5  # half an hour of three machines
    lines = cost.estimate(spec(machine="s", parallelism=3, timeout="2h", budget=budget)).lines()
    assert "after about 29m30s of all machines running (leaving 30s to stop)" in lines[1]


def test_spot_above_on_demand_is_warned_about() -> None:
    on_demand, _ = HOURLY["us-east-1"]["t3.medium"]
    (warning,) = cost.estimate(spec(machine="s", spot=on_demand * 3)).warnings
    assert warning.startswith("spot: the maximum") and "above the on-demand price" in warning
    assert cost.estimate(spec(machine="s", spot=on_demand / 2)).warnings == ()


def test_the_local_cloud_is_free_unless_given_a_notional_price() -> None:
    free = cost.pricing_for(parse_spec({"cloud": "local", "script": SCRIPT}))
    assert (free.rate, free.basis) == (0.0, "free")
    with pytest.raises(SpecError, match="set notional_price"):
        parse_spec({"cloud": "local", "script": SCRIPT, "budget": 1})
    rehearsal = parse_spec(
        {"cloud": "local", "script": SCRIPT, "notional_price": 0.5, "budget": 1, "spot": 0}
    )
    p = cost.pricing_for(rehearsal)
    assert (p.rate, p.basis, p.budget) == (0.5, "notional", 1.0)
    with pytest.raises(SpecError, match="notional_price: is for rehearsals"):
        spec(notional_price=0.5)
    with pytest.raises(SpecError, match="budget: must be 0"):
        spec(budget=-1)


def _pricing(**kw) -> cost.Pricing:  # type: ignore[no-untyped-def]
    base = {
        "types": ("a.large", "b.large"),
        "hourly": {"a.large": 3.6, "b.large": 7.2},
        "currency": "USD",
        "basis": "on-demand",
        "parallelism": 2,
    }
    return cost.Pricing(**{**base, **kw})


def test_spend_bills_the_clouds_own_times_and_sums_per_index() -> None:
    pricing = _pricing(minimum_seconds=60.0)
    reports = [
        # index 0: preempted after 100 s of the cloud's time, then a replacement
        BootReport("0-a", 0, "a", "i-1", "interrupted", 1010.0, 1090.0, checkpointed=1070.0),
        BootReport("0-b", 0, "b", "i-2", "succeeded", 1130.0, 1190.0, exit_code=0),
        # index 1: on a fallback type, still running (the cloud has no end yet)
        BootReport("1-c", 1, "c", "i-3", "running", 1005.0),
    ]
    cloud = [
        CloudMachine("i-1", False, type="a.large", zone="z1", launched=1000.0, ended=1100.0),
        CloudMachine("i-2", False, type="a.large", zone="z2", launched=1120.0, ended=1150.0),
        CloudMachine("i-3", True, type="b.large", zone="z1", launched=1000.0),
        CloudMachine("i-4", False, type="a.large", launched=1200.0, ended=1210.0),  # no report
    ]
    spent = cost.spend(pricing, reports, cloud, now=1300.0)
    by = {b.machine: b for b in spent.boots}
    assert by["0-a"].seconds == 100.0 and by["0-a"].timed_by == "cloud"
    assert by["0-a"].cost == pytest.approx(0.1)  # 100 s at 3.6/h
    assert by["0-b"].seconds == 60.0  # 30 s billed as the minimum minute
    assert by["1-c"].seconds == 300.0 and by["1-c"].running and by["1-c"].rate == 7.2
    assert by["i-4"].index is None and by["i-4"].seconds == 60.0
    assert spent.per_index == pytest.approx({0: 0.16, 1: 0.6})
    assert spent.total == pytest.approx(0.16 + 0.6 + 0.06)
    assert not spent.final  # index 1 still bills
    # The preempted boot: 60 s of work up to its checkpoint kept, 20 s after it redone.
    assert (by["0-a"].saved_seconds, by["0-a"].lost_seconds) == (60.0, 20.0)
    assert spent.saved == pytest.approx(0.06) and spent.lost == pytest.approx(0.02)
    d = spent.to_dict()
    assert d["total"] == pytest.approx(0.82) and d["per_index"] == {"0": 0.16, "1": 0.6}
    assert d["currency"] == "USD" and len(d["boots"]) == 4


def test_without_the_clouds_times_the_reports_are_billed_and_an_instance_once() -> None:
    pricing = _pricing()
    reports = [
        BootReport("0-a", 0, "a", "i-1", "succeeded", 1000.0, 1036.0),
        BootReport("0-b", 0, "b", "i-1", "succeeded", 1040.0, 1076.0),  # agent restarted
        BootReport("1-c", 1, "c", "i-9", "failed", 1000.0, 1072.0),
    ]
    cloud = [CloudMachine("i-1", False, launched=990.0, ended=1080.0)]
    spent = cost.spend(pricing, reports, cloud, now=2000.0)
    by = {b.machine: b for b in spent.boots}
    assert (by["0-a"].seconds, by["0-b"].seconds) == (90.0, 0.0)  # one instance, billed once
    assert by["1-c"].timed_by == "report" and by["1-c"].seconds == 72.0
    assert by["1-c"].type == "a.large"  # the cloud did not say: the task's first type
    assert spent.final


def test_a_running_report_whose_machine_is_gone_bills_to_its_last_word() -> None:
    """Hard-killed, no final report, and the cloud has forgotten the machine: billed to
    its last report, not to now (else the figure would grow forever)."""
    report = BootReport("0-a", 0, "a", "i-1", "running", 100.0, updated=160.0, checkpointed=150.0)
    spent = cost.spend(_pricing(), [report], [], now=10_000.0)
    (boot,) = spent.boots
    assert (boot.seconds, boot.running, boot.timed_by) == (60.0, False, "report")
    assert (boot.saved_seconds, boot.lost_seconds) == (50.0, 10.0) and spent.final
    # A cloud that cannot list its machines (None): the report is all there is.
    (still,) = cost.spend(_pricing(), [report], None, now=200.0).boots
    assert still.running and still.seconds == 100.0


def test_a_type_without_a_price_makes_the_total_unknown() -> None:
    spent = cost.spend(
        _pricing(),
        [BootReport("0-a", 0, "a", "i-1", "succeeded", 0.0, 10.0)],
        [CloudMachine("i-1", False, type="z.huge", launched=0.0, ended=10.0)],
        now=20.0,
    )
    assert spent.total is None and spent.summary() == "cost: no price known for z.huge"
    assert spent.to_dict()["total"] is None


def test_the_agents_view_of_the_budget() -> None:
    pricing = _pricing(budget=1.0)  # ceiling 7.2/h, two machines: lasts 250 s
    assert pricing.budget_seconds() == pytest.approx(250.0)
    assert pricing.check_every() == pytest.approx(2.5)  # 1% of it
    reports = [
        BootReport("0-a", 0, "a", "i-1", "interrupted", 0.0, 100.0),
        BootReport("0-b", 0, "b", "i-2", "running", 110.0, updated=200.0),
        # died without a final report: billed to its last heartbeat, not to now
        BootReport("1-c", 1, "c", "i-3", "running", 0.0, updated=50.0),
    ]
    spent, running = cost.spent_by_reports(pricing, reports, now=200.0, stale_after=10.0)
    assert running == 1
    assert spent == pytest.approx(7.2 * (100 + 90 + 50) / 3600)
    assert not cost.over_budget(pricing, spent)
    assert cost.over_budget(pricing, 1.0)  # the spend at the end would reach it
    assert not cost.over_budget(_pricing(), 1e9)  # no budget, no limit
    # A boot whose metadata gave its launch and type counts from the launch, at its price.
    typed = [BootReport("0-a", 0, "a", "i-1", "succeeded", 100.0, 200.0)]
    typed[0] = typed[0].with_(launched=40.0, machine_type="a.large")
    assert cost.spent_by_reports(pricing, typed, now=300.0, stale_after=10.0) == (
        pytest.approx(3.6 * 160 / 3600),
        0,
    )
    # A finished boot costs at least the cloud's minimum, as the cloud bills it.
    short = [BootReport("0-a", 0, "a", "i-1", "succeeded", 0.0, 10.0)]
    minimum = _pricing(budget=1.0, minimum_seconds=60.0)
    assert cost.spent_by_reports(minimum, short, now=100.0, stale_after=10.0) == (
        pytest.approx(7.2 * 60 / 3600),
        0,
    )


def test_the_budget_check_counts_the_time_it_takes_to_stop() -> None:
    # b.large at 7.2/h: 0.002 a second; checks every 2.5 s; 20 s of shutdown.
    pricing = _pricing(budget=1.0, stop_seconds=20.0, minimum_seconds=60.0)
    horizon = cost.stop_horizon(pricing, stopping=10.0)  # the script's grace, a checkpoint
    assert horizon == pytest.approx(2.5 + 10.0 + 20.0)
    per_second = 7.2 / 3600

    def at_end(elapsed: float, ahead: float) -> float:
        running = [BootReport("0-a", 0, "a", "i-1", "running", 0.0, updated=elapsed)]
        spent, count = cost.spent_by_reports(
            pricing, running, now=elapsed, stale_after=10.0, ahead=ahead
        )
        assert count == 1
        return spent

    # Stopped at the next check, the machine bills through the horizon: the check stops
    # it while the spend at the end still fits.
    fits = 1.0 / per_second - horizon - 1.0  # seconds of running that leave room to stop
    assert at_end(fits, horizon) == pytest.approx((fits + horizon) * per_second)
    assert not cost.over_budget(pricing, at_end(fits, horizon))
    assert cost.over_budget(pricing, at_end(fits + 2.0, horizon))
    # Counting only the time to the next check, the same moment would have looked safe.
    assert not cost.over_budget(pricing, at_end(fits + 2.0, pricing.check_every()))
    # A young machine stopped now is billed the cloud's minimum all the same.
    assert at_end(5.0, horizon) == pytest.approx(60.0 * per_second)
    assert at_end(5.0, 0.0) == pytest.approx(5.0 * per_second)  # so far: what it ran
    # The sheet's figure travels with the prices; the local cloud's machines stop fast.
    assert cost.Pricing.from_dict(pricing.to_dict()).stop_seconds == 20.0
    local = parse_spec(
        {"cloud": "local", "script": SCRIPT, "notional_price": 1.0}, check_paths=False
    )
    assert cost.pricing_for(local).stop_seconds < cost.STOP_SECONDS


def test_the_backstop_moves_earlier_when_the_budget_is_the_nearer_limit() -> None:
    ref = TaskRef("t", "aws", "us-east-1", {}, 2, 1000.0, 1000.0 + 86400)
    assert ref.backstop_at == ref.deadline
    # 1.0 at 2 x 7.2/h lasts 250 s; the machines bill 50 s more while they stop, so the
    # backstop tells them to stop 50 s earlier and the spend at the end is the budget.
    pricing = _pricing(budget=1.0, stop_seconds=50.0)
    with_budget = TaskRef.from_dict({**ref.to_dict(), "pricing": pricing.to_dict()})
    assert with_budget.backstop_at == pytest.approx(1200.0)
    billed = with_budget.backstop_at - ref.created + pricing.stop_seconds
    assert 2 * 7.2 * billed / 3600 == pytest.approx(pricing.budget)
    # A budget shorter than the time to stop: stop at once, never before create.
    tiny = TaskRef.from_dict({**ref.to_dict(), "pricing": _pricing(budget=0.01).to_dict()})
    assert tiny.backstop_at == ref.created
    generous = TaskRef.from_dict({**ref.to_dict(), "pricing": _pricing(budget=1e6).to_dict()})
    assert generous.backstop_at == ref.deadline


def test_pricing_round_trips_as_plain_data() -> None:
    p = _pricing(budget=2.5, minimum_seconds=60.0, source="s", date="2025-05-01")
    assert cost.Pricing.from_dict(p.to_dict()) == p
    assert cost.Pricing.from_dict(None) == cost.Pricing()


BLOCK_SDKS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("boto3", "botocore"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from pulumi_iterative import cost
from pulumi_iterative.spec import parse_spec
s = parse_spec({"cloud": "aws", "machine": "m+t4", "spot": 0, "budget": 5, "script": "true"})
print(cost.estimate(s).lines()[0])
"""


def test_the_estimate_needs_no_sdk_so_preview_makes_no_cloud_call() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", BLOCK_SDKS], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    assert "g4dn.xlarge in us-east-1 at" in probe.stdout


def test_money_and_durations_read_well() -> None:
    assert cost.money(12.345, "USD") == "12.35 USD"
    assert cost.money(0.0123, "USD") == "0.0123 USD"
    assert cost.money(0.0, "USD") == "0.00 USD"
    assert cost.money(None, "USD") == "no price known"
    assert (cost.duration(59), cost.duration(61), cost.duration(7200), cost.duration(5400)) == (
        "59s",
        "1m01s",
        "2h",
        "1h30m",
    )


def test_a_cloud_without_a_price_list_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape a cloud landing without prices.py has (CloudCatalog.prices = None)."""
    from dataclasses import replace

    from pulumi_iterative import catalog
    from pulumi_iterative.clouds.aws.catalog import CATALOG

    monkeypatch.setattr(catalog, "cloud_catalog", lambda cloud: replace(CATALOG, prices=None))
    p = cost.pricing_for(spec(machine="m+t4"))
    assert (p.known, p.rate, p.source) == (False, None, "no price list for aws yet")
    assert "no price known (no price list for aws yet)" in cost.estimate(spec()).lines()[0]
    with pytest.raises(SpecError, match="budget: no price is known"):
        spec(budget=1)
    spent = cost.spend(p, [BootReport("0-a", 0, "a", "i-1", "succeeded", 0.0, 5.0)], [], now=9)
    assert spent.total is None and "no price known" in spent.summary()
