"""What a task costs: the price plan, the estimate before it starts, the spend after.

    Pricing   the prices a task is billed at, fixed at create (the cloud's dated snapshot,
              or its live prices where it has them) and kept in the TaskRef and the task
              definition, so status and the agent's budget check need no catalog
    estimate  at preview, from the snapshot only (no cloud call): per hour, up to the
              timeout, and warnings (spot above on-demand, a budget without a price)
    spend     for status: every boot's billed seconds (the cloud's launch and end times
              where it has them, else the boot report's) times its type's price,
              summed per index and for the task, plus what preemptions cost and what
              checkpoints saved

Cloud-free, Pulumi-free: the agent imports it on the machine to enforce the budget.
A price that is not known is None all the way through and printed as "no price known".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .clouds.base import Price

if TYPE_CHECKING:
    from .records import BootReport
    from .spec import TaskSpec
    from .status import CloudMachine

# The budget is checked this often at most, and often enough that one check period of
# the whole task costs at most BUDGET_STEP of the budget.
BUDGET_CHECK_MAX = 30.0
BUDGET_CHECK_MIN = 1.0
BUDGET_STEP = 0.01
# A machine bills this long after its agent decides to stop, besides the final
# checkpoint, where the cloud's price sheet does not say (PriceSheet.stop_seconds).
STOP_SECONDS = 60.0
# The fix for a budget on a machine nobody can price (spec at preview, create after the
# live list): the same words in both places.
CHOOSE_PRICED = "choose a machine and region with a known price, or remove budget"


@dataclass(frozen=True)
class Pricing:
    """The prices a task's machines are billed at (per machine-hour, at its spot setting)."""

    types: tuple[str, ...] = ()  # native types the group may run, best first
    hourly: Mapping[str, float] = field(default_factory=dict)  # type -> price; absent: unknown
    on_demand: Mapping[str, float] = field(default_factory=dict)
    currency: str = ""
    basis: str = ""  # on-demand, spot, spot (max), notional, free
    source: str = ""
    date: str = ""
    minimum_seconds: float = 0.0
    stop_seconds: float = STOP_SECONDS  # billed after the decision to stop (see PriceSheet)
    parallelism: int = 1
    budget: float = 0.0  # 0: none

    @property
    def known(self) -> bool:
        return bool(self.types) and self.types[0] in self.hourly

    @property
    def rate(self) -> float | None:
        """The price per hour of one machine of the first (preferred) type."""
        return self.hourly.get(self.types[0]) if self.types else None

    def unpriced_budget(self, fix: str, region: str = "") -> str:
        """Why a budget cannot be enforced at these prices (none known), and `fix`."""
        where = f" in {region}" if region else ""
        return (
            f"no price is known for {', '.join(self.types)}{where} ({self.source}), so a "
            f"budget cannot be enforced; {fix}"
        )

    @property
    def ceiling(self) -> float | None:
        """The highest price among the types the group may fall back to (budget math)."""
        prices = [self.hourly[t] for t in self.types if t in self.hourly]
        return max(prices) if prices else None

    def price_of(self, machine_type: str) -> float | None:
        return self.hourly.get(machine_type or (self.types[0] if self.types else ""))

    def budget_seconds(self) -> float | None:
        """How long the budget lasts with every machine billing at the ceiling."""
        top = self.ceiling
        if not self.budget or not top:
            return None
        return self.budget / (top * self.parallelism) * 3600.0

    def stop_by_seconds(self) -> float | None:
        """Seconds after create by which every machine must be told to stop for the spend
        to stay within the budget: its lasting time less the time it takes to stop (the
        machines bill through their shutdown). None without a budget or a price."""
        lasts = self.budget_seconds()
        return None if lasts is None else max(0.0, lasts - self.stop_seconds)

    def check_every(self) -> float:
        """Seconds between the agent's budget checks (see BUDGET_STEP)."""
        lasts = self.budget_seconds()
        if lasts is None:
            return BUDGET_CHECK_MAX
        return min(BUDGET_CHECK_MAX, max(BUDGET_CHECK_MIN, lasts * BUDGET_STEP))

    def describe(self) -> str:
        return f"{self.basis}; {self.source}" + (f" of {self.date}" if self.date else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["types"] = list(self.types)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Pricing:
        d = dict(data or {})
        return cls(
            types=tuple(str(t) for t in d.get("types") or ()),
            hourly={str(k): float(v) for k, v in (d.get("hourly") or {}).items()},
            on_demand={str(k): float(v) for k, v in (d.get("on_demand") or {}).items()},
            currency=str(d.get("currency") or ""),
            basis=str(d.get("basis") or ""),
            source=str(d.get("source") or ""),
            date=str(d.get("date") or ""),
            minimum_seconds=float(d.get("minimum_seconds") or 0.0),
            stop_seconds=float(d.get("stop_seconds", STOP_SECONDS)),
            parallelism=int(d.get("parallelism") or 1),
            budget=float(d.get("budget") or 0.0),
        )


def pricing_for(
    spec: TaskSpec,
    live: Mapping[str, Price] | None = None,
    live_source: str = "",
    live_date: str = "",
) -> Pricing:
    """The task's prices from its cloud's snapshot; `live` prices (type -> Price, asked of
    the cloud at create) replace the snapshot's figures they have. The source and date
    are the live list's when any figure the task is billed at came from it."""
    from . import catalog

    cat = catalog.cloud_catalog(spec.cloud)
    region = catalog.resolve_region(spec.cloud, spec.region)
    types = catalog.resolve_machine(spec.cloud, spec.machine).types
    sheet = cat.prices

    def plan(**rest: Any) -> Pricing:
        return Pricing(types=types, parallelism=spec.parallelism, budget=spec.budget, **rest)

    stop_seconds = sheet.stop_seconds if sheet else STOP_SECONDS
    if spec.notional_price:
        return plan(
            hourly={t: spec.notional_price for t in types},
            on_demand={t: spec.notional_price for t in types},
            currency=sheet.currency if sheet else "USD",
            basis="notional",
            source="notional_price, a rehearsal of what a cloud would charge",
            stop_seconds=stop_seconds,
        )
    if sheet is None:
        why = cat.notes.get("price", f"no price list for {spec.cloud} yet")
        return plan(basis="unknown", source=why)
    on_demand: dict[str, float] = {}
    hourly: dict[str, float] = {}
    used_live = used_snapshot = False
    for t in types:
        snapshot = sheet.price(region, t) or Price(None, None)
        fresh = (live or {}).get(t) or Price(None, None)
        price = Price(
            fresh.on_demand if fresh.on_demand is not None else snapshot.on_demand,
            fresh.spot if fresh.spot is not None else snapshot.spot,
        )
        if price.on_demand is not None:
            on_demand[t] = price.on_demand
        if not spec.is_spot:
            if price.on_demand is not None:
                hourly[t] = price.on_demand
                used_live |= fresh.on_demand is not None
                used_snapshot |= fresh.on_demand is None
            continue
        if price.spot is not None:
            # The market price is paid, never more than the maximum the user set.
            hourly[t] = min(price.spot, spec.spot) if spec.spot > 0 else price.spot
            used_live |= fresh.spot is not None
            used_snapshot |= fresh.spot is None
    if spec.cloud == "local":
        basis = "free"
    elif not spec.is_spot:
        basis = "on-demand"
    else:
        basis = "spot" if spec.spot <= 0 else f"spot (max {spec.spot:g})"
    source, date = sheet.source, sheet.date
    if used_live:
        source, date = live_source or "the cloud's live prices", live_date
        if used_snapshot:  # a fallback type the live list lacks
            source += f" (some types from {sheet.source} of {sheet.date})"
    return plan(
        hourly=hourly,
        on_demand=on_demand,
        currency=sheet.currency,
        basis=basis,
        source=source,
        date=date,
        minimum_seconds=sheet.minimum_seconds,
        stop_seconds=stop_seconds,
    )


# --- the estimate (preview) --------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    pricing: Pricing
    region: str
    timeout: int
    warnings: tuple[str, ...] = ()

    @property
    def hourly(self) -> float | None:
        rate = self.pricing.rate
        return None if rate is None else rate * self.pricing.parallelism

    @property
    def up_to_timeout(self) -> float | None:
        hourly = self.hourly
        return None if hourly is None else hourly * self.timeout / 3600.0

    def lines(self) -> list[str]:
        p = self.pricing
        what = f"{p.parallelism} x {p.types[0] if p.types else '?'} in {self.region}"
        if not p.known:
            return [f"estimate: {what}: no price known ({p.source})"]
        cur = p.currency
        lines = [
            f"estimate: {what} at {money(p.rate, cur)}/h each = {money(self.hourly, cur)}/h; "
            f"up to the {duration(self.timeout)} timeout: {money(self.up_to_timeout, cur)} "
            f"({p.describe()})"
        ]
        stop_by = p.stop_by_seconds()
        if p.budget:
            if stop_by is not None and stop_by < self.timeout:
                lines.append(
                    f"budget {money(p.budget, cur)}: stops the task after about "
                    f"{duration(stop_by)} of all machines running (leaving "
                    f"{duration(p.stop_seconds)} to stop), before its timeout"
                )
            else:
                lines.append(f"budget {money(p.budget, cur)}: more than the timeout can spend")
        return lines


def estimate(spec: TaskSpec) -> Estimate:
    """Before anything starts: from the snapshot only, never a cloud call."""
    from . import catalog

    pricing = pricing_for(spec)
    warnings = []
    first = pricing.types[0] if pricing.types else ""
    on_demand = pricing.on_demand.get(first)
    if spec.spot > 0 and on_demand is not None and spec.spot > on_demand:
        warnings.append(
            f"spot: the maximum {money(spec.spot, pricing.currency)}/h is above the on-demand "
            f"price of {first} ({money(on_demand, pricing.currency)}/h); spot is billed at "
            "the market price, so use 0 (market) or on-demand (-1)"
        )
    region = catalog.resolve_region(spec.cloud, spec.region)
    if spec.budget and not pricing.ceiling:
        warnings.append(
            f"budget: the price list shipped with this version has no price for "
            f"{', '.join(pricing.types)} in {region}; create asks the cloud's live price "
            "list, and stops before making anything if it has none either"
        )
    return Estimate(pricing, region, spec.timeout, tuple(warnings))


# --- the spend (status) ------------------------------------------------------------------


@dataclass(frozen=True)
class BootCost:
    machine: str  # the boot ("<index>-<boot>"), or the cloud's id if it never reported
    index: int | None
    instance: str
    type: str
    zone: str
    seconds: float  # billed
    timed_by: str  # "cloud" (its launch/termination times) or "report" (the agent's)
    rate: float | None
    cost: float | None
    running: bool
    lost_seconds: float = 0.0  # an interrupted boot: work after its last checkpoint, redone
    saved_seconds: float = 0.0  # an interrupted boot: work up to its last checkpoint, kept


@dataclass(frozen=True)
class Spend:
    currency: str
    basis: str
    boots: tuple[BootCost, ...]
    final: bool  # no machine bills any more: the figure will not change

    @property
    def known(self) -> bool:
        return all(b.cost is not None for b in self.boots)

    @property
    def total(self) -> float | None:
        return _sum(b.cost for b in self.boots)

    @property
    def per_index(self) -> dict[int, float | None]:
        out: dict[int, list[float | None]] = {}
        for b in self.boots:
            if b.index is not None:
                out.setdefault(b.index, []).append(b.cost)
        return {i: _sum(costs) for i, costs in sorted(out.items())}

    @property
    def lost(self) -> float | None:
        """What work redone after preemptions cost (time after the last checkpoint)."""
        return _sum(_at(b.rate, b.lost_seconds) for b in self.boots if b.lost_seconds)

    @property
    def saved(self) -> float | None:
        """What the checkpoints of preempted boots saved (work their replacements kept)."""
        return _sum(_at(b.rate, b.saved_seconds) for b in self.boots if b.saved_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "basis": self.basis,
            "total": _round(self.total),
            "per_index": {str(i): _round(c) for i, c in self.per_index.items()},
            "preemption_lost": _round(self.lost),
            "checkpoints_saved": _round(self.saved),
            "final": self.final,
            "boots": [
                {**asdict(b), "cost": _round(b.cost), "seconds": round(b.seconds, 1)}
                for b in self.boots
            ],
        }

    def summary(self) -> str:
        cur = self.currency
        if not self.boots:
            return "cost: nothing billed yet"
        if not self.known:
            missing = sorted({b.type for b in self.boots if b.cost is None})
            return f"cost: no price known for {', '.join(missing)}"
        text = f"cost: {money(self.total, cur)} ({self.basis}{'' if self.final else ', so far'})"
        if self.lost:
            text += f"; preemptions cost {money(self.lost, cur)} of work redone"
        if self.saved:
            text += f", checkpoints saved {money(self.saved, cur)}"
        return text


def spend(
    pricing: Pricing,
    boots: Iterable[BootReport],
    cloud: Iterable[CloudMachine] | None,
    *,
    now: float,
    done: bool = True,
) -> Spend:
    """Every boot's billed time and price; the cloud's own times win over the agent's.
    `done`: the task has ended; until then the figure is not final even when no machine
    bills yet (a queued task whose machines have not launched)."""
    machines = {m.id: m for m in (cloud or ())}
    billed: set[str] = set()  # an instance is billed once, whatever number of reports
    out: list[BootCost] = []
    for r in sorted(boots, key=lambda b: (b.index, b.started or 0)):
        m = machines.get(r.instance)
        # A running report whose machine the cloud no longer lists is gone (as in status);
        # with no machine list at all (None) the report is all there is to go by.
        alive = m.alive if m else cloud is None
        running = r.state == "running" and alive
        if m is not None and m.launched is not None:
            if r.instance in billed:
                seconds = 0.0
            else:
                billed.add(r.instance)
                seconds = _billed(pricing, _first(m.ended, now) - m.launched, m.ended is not None)
            timed_by = "cloud"
            running = m.ended is None
        else:
            end = _first(r.finished, now if running else None, r.updated, r.started, now)
            seconds = _billed(pricing, end - _first(_start(r), end), not running)
            timed_by = "report"
        lost = saved = 0.0
        # Taken away: said so itself, or its machine is gone without a final report.
        gone = r.state == "running" and not alive
        if (r.state == "interrupted" or gone) and r.started is not None:
            end = _first(r.finished, m.ended if m else None, r.updated, r.started)
            mark = _first(r.checkpointed, r.started)
            mark = min(max(mark, r.started), end)
            lost, saved = end - mark, mark - r.started
        out.append(
            _boot(
                pricing,
                r.machine,
                r.index,
                r.instance,
                m,
                seconds,
                timed_by,
                running,
                lost,
                saved,
                r.machine_type,
            )
        )
    reported = {r.instance for r in out}
    for m in machines.values():  # launched, never reported (booting, or broke before)
        if m.id in reported or m.launched is None:
            continue
        seconds = _billed(pricing, _first(m.ended, now) - m.launched, m.ended is not None)
        out.append(_boot(pricing, m.id, None, m.id, m, seconds, "cloud", m.ended is None))
    final = done and not any(b.running for b in out) and not any(m.alive for m in machines.values())
    return Spend(pricing.currency, pricing.basis, tuple(out), final)


def _boot(
    pricing: Pricing,
    machine: str,
    index: int | None,
    instance: str,
    m: CloudMachine | None,
    seconds: float,
    timed_by: str,
    running: bool,
    lost: float = 0.0,
    saved: float = 0.0,
    reported_type: str = "",
) -> BootCost:
    kind = (m.type if m else "") or reported_type or (pricing.types[0] if pricing.types else "")
    rate = pricing.price_of(kind)
    return BootCost(
        machine=machine,
        index=index if index is None or index >= 0 else None,
        instance=instance,
        type=kind,
        zone=m.zone if m else "",
        seconds=seconds,
        timed_by=timed_by,
        rate=rate,
        cost=_at(rate, seconds),
        running=running,
        lost_seconds=lost,
        saved_seconds=saved,
    )


def _start(r: BootReport) -> float | None:
    """When a boot began billing, as far as its report knows: the machine's launch if its
    metadata said (boot and install time count), else the agent's start."""
    if r.launched is not None and r.started is not None and r.launched <= r.started:
        return r.launched
    return r.started


def _first(*values: float | None) -> float:
    """The first value that is there (0.0 counts: it is a time)."""
    return next(v for v in values if v is not None)


def _billed(pricing: Pricing, seconds: float, ended: bool) -> float:
    seconds = max(0.0, seconds)
    return max(seconds, pricing.minimum_seconds) if ended else seconds


def _at(rate: float | None, seconds: float) -> float | None:
    return None if rate is None else rate * seconds / 3600.0


def _sum(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# --- the budget, as the agent sees it -------------------------------------------------------


def spent_by_reports(
    pricing: Pricing,
    reports: Iterable[BootReport],
    *,
    now: float,
    stale_after: float,
    ahead: float = 0.0,
) -> tuple[float, int]:
    """(spend, machines still billing) from the boot reports alone: what an agent can
    know without asking the cloud. Each boot counts from its machine's launch where its
    metadata said, at its type's price (else the dearest the group may pay). A running
    report not refreshed for `stale_after` seconds belongs to a machine that died:
    billed to then. A finished boot is billed at least the cloud's minimum. With
    `ahead`, the running machines are billed as if they stopped that many seconds from
    now (so at least the minimum too): the spend at the end, were the task stopped."""
    ceiling = pricing.ceiling or 0.0
    total, running = 0.0, 0
    for r in reports:
        if r.started is None:
            continue
        last = r.updated if r.updated is not None else r.started
        alive = r.state == "running" and now - last <= stale_after
        end = now + ahead if alive else (r.finished if r.finished is not None else last)
        running += alive
        rate = pricing.hourly.get(r.machine_type, ceiling)
        ended = not alive or ahead > 0
        total += rate * _billed(pricing, end - _first(_start(r), r.started), ended) / 3600.0
    return total, running


def stop_horizon(pricing: Pricing, stopping: float = 0.0) -> float:
    """Seconds a running machine still bills from a budget check until it has stopped,
    were it stopped at the next check: until that check, through the agent's stopping
    (`stopping`: the script's grace, the final checkpoint) and the cloud's shutdown."""
    return pricing.check_every() + max(stopping, 0.0) + pricing.stop_seconds


def over_budget(pricing: Pricing, projected: float) -> bool:
    """Must the task stop now? Yes when the spend at the end, were it stopped at the next
    check (spent_by_reports with ahead=stop_horizon), would pass the budget: stopping
    when this says so keeps the spend at the end within the budget."""
    return bool(pricing.budget) and projected >= pricing.budget


# --- words ---------------------------------------------------------------------------------


def money(value: float | None, currency: str) -> str:
    if value is None:
        return "no price known"
    digits = 2 if value >= 1 or value == 0 else max(2, 1 - math.floor(math.log10(value)) + 1)
    return f"{value:.{digits}f} {currency}".strip()


def duration(seconds: float) -> str:
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m" if m else f"{h}h"
    return f"{m}m{s:02d}s" if m else f"{s}s"
