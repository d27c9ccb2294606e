"""The contract every cloud implements, written once.

A cloud is one folder, `pulumi_iterative/clouds/<cloud>/`, holding:

    catalog.py   CATALOG: a `CloudCatalog` (machine types, regions, images as data)
    prices.py    PRICES: a `PriceSheet` (a dated snapshot of hourly prices, as data), set
                 as `CloudCatalog.prices`; a cloud without one says "no price known"
    rules.py     validate(spec) -> list[FieldError]: the cloud's own rules on a parsed
                 spec, run at `pulumi preview` (no SDK, no cloud call)
    backend.py   Backend: a class following `Backend` below (the workstation side)
    machine.py   MachineSide: a class following `MachineSide` below (what the agent
                 calls on a machine of that cloud); imports only what a machine has

plus whatever it needs inside (names.py, api.py, resources/...). The registry in
`clouds/__init__.py` names each cloud's folder explicitly. Nothing outside
`clouds/<cloud>/` imports that cloud's SDK, and `catalog.py` and `rules.py` import none
at all, so `pulumi preview` can validate a task without any SDK installed.

Creation is an ordered list of `Step`s (steps.py). A step that makes a cloud object
declares it as a `Made` record *before* it runs; the records are kept in the task's
state (`TaskRef.made`) and teardown - a failed create's rollback or a delete - asks
the backend to `remove` exactly those, newest first. So delete never re-derives
what today's code would have made: it undoes what the task's own create made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..agent.bootstrap import Install
    from ..errors import FieldError
    from ..spec import TaskSpec
    from ..status import CloudMachine, Event
    from ..steps import Step
    from ..task import TaskRef


# The generic vocabulary every catalog maps: sizes, accelerators and regions.
GENERIC_SIZES = ("s", "m", "l", "xl")
ACCELERATORS = ("t4", "a10g", "l4", "a100", "h100")
GENERIC_REGIONS = ("us-east", "us-west", "eu-north", "eu-west")


@dataclass(frozen=True)
class Made:
    """One cloud object a create step made: its kind and what finds it again.

    `kind` is the backend's own word ("bucket", "identity", "group", ...); `attrs` are
    plain strings (derived names, keys), never secrets. Stored in Pulumi state.
    """

    kind: str
    attrs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, kind: str, **attrs: str) -> Made:
        return cls(kind, tuple(sorted((k, str(v)) for k, v in attrs.items())))

    def get(self, name: str, default: str = "") -> str:
        return dict(self.attrs).get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dict(self.attrs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Made:
        rest = {k: str(v) for k, v in data.items() if k != "kind"}
        return cls.of(str(data["kind"]), **rest)


@dataclass(frozen=True)
class Price:
    """What one machine type costs per hour in one region (None: not known)."""

    on_demand: float | None
    spot: float | None = None  # a typical spot price; live prices may differ


@dataclass(frozen=True)
class PriceSheet:
    """A cloud's prices as a dated snapshot shipped with the package (`prices.py`).

    rows:     (native region, native machine type) -> Price. Only native names: the
              generic ones resolve through the catalog first. A pair that is not here
              has no known price, and every figure then says so; never guess one.
    currency: ISO 4217 ("USD").
    source:   where the numbers come from (a public price list and how it was read).
    date:     the day the snapshot was taken (ISO, "2025-06-01").
    minimum_seconds: the least a boot is billed (AWS Linux: 60), 0 for none.
    stop_seconds: how long a machine still bills after its agent decides to stop,
              besides the final checkpoint: leaving the group and the cloud's shutdown
              (the budget check counts it so the spend at the end stays in the budget).

    A cloud that offers live prices says so with `Backend.live_prices`; those are
    asked for at create only, never at preview.
    """

    rows: Mapping[tuple[str, str], Price]
    currency: str
    source: str
    date: str
    minimum_seconds: float = 0.0
    stop_seconds: float = 60.0

    def price(self, region: str, machine_type: str) -> Price | None:
        return self.rows.get((region, machine_type))


@dataclass(frozen=True)
class CloudCatalog:
    """A cloud's offer as data: generic names -> native ones, and the native shapes.

    machines: generic machine ("m", "m+t4") -> native types, best first (the later
              ones are capacity fallbacks).
    regions:  generic region ("us-east") -> native region or zone.
    images:   alias ("ubuntu", "nvidia") -> the cloud's image reference.
    native_*: what a native name looks like, so a typo is refused at preview
              instead of being sent to the cloud (None: only the table's names).
    prices:   the dated price snapshot (None: this cloud's prices are not known;
              estimates and spend then say "no price known", budgets are refused;
              `notes["price"]` then says why and what to do, e.g. notional_price).
    """

    machines: Mapping[str, tuple[str, ...]]
    regions: Mapping[str, str]
    default_region: str
    images: Mapping[str, str]
    native_machine: re.Pattern[str] | None = None
    native_region: re.Pattern[str] | None = None
    native_image: re.Pattern[str] | None = None
    notes: Mapping[str, str] = field(default_factory=dict)  # e.g. "what 'spot' means here"
    prices: PriceSheet | None = None


def real_cloud_rules(
    spec: TaskSpec, *, notional_price: bool = False, resource_group: bool = False
) -> list[FieldError]:
    """The rules every cloud but `local` shares (each cloud's rules.py calls this).

    `notional_price`: the cloud has no public price (k8s: the cluster's own machines), so
    a user may state what a machine hour costs them. `resource_group`: the cloud takes
    an existing resource group to work in (azure)."""
    from ..errors import FieldError

    errors = [] if resource_group else resource_group_refused(spec)
    if spec.preempt_interval:
        errors.append(
            FieldError(
                "preempt_interval",
                "rehearsed preemption is for cloud 'local' only; real clouds preempt on their own",
            )
        )
    if spec.notional_price and not notional_price:
        errors.append(
            FieldError(
                "notional_price",
                "is for rehearsals on cloud 'local' and for k8s clusters; this cloud bills "
                "its own prices "
                "(see `pulumi-iterative price`)",
            )
        )
    return errors


def resource_group_refused(spec: TaskSpec) -> list[FieldError]:
    """`resource_group` on a cloud that has none (every cloud but azure)."""
    from ..errors import FieldError

    if not spec.resource_group:
        return []
    return [
        FieldError(
            "resource_group",
            f"is for cloud 'azure' only (an existing Azure resource group); cloud "
            f"{spec.cloud!r} makes its own objects from the task id: remove it",
        )
    ]


class Backend(Protocol):
    """The workstation side of a cloud. Every method is idempotent; none keeps an SDK
    client, socket or lock on self (the provider object is pickled into state).

    Optional: `open_bucket(ref, *, fresh)`, a context manager yielding the
    `storage.Remote` the workstation uses for one operation, for a bucket that is not
    reachable at `ref.remote` directly (k8s: a volume inside the cluster, served by a
    short-lived transfer pod); `fresh` asks for one whose listings are never cached
    (held across polls). Without it, lifecycle uses `ref.remote`, which the machines
    use too.
    """

    name: str

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        """Derive names, the remote and the budget from the spec. No cloud calls."""
        ...

    def check_access(self, ref: TaskRef) -> None:
        """Can the caller reach this cloud at all? Called by `lifecycle.create` after
        `prepare` and before the first step, so missing or expired credentials are said
        first, not as "step [1/n] failed" with a cleanup error after it.

        Ask the cloud who is calling (one cheap, read-only call that every caller may
        make: AWS `sts:GetCallerIdentity`, GCP an OAuth token for the credentials, Azure
        a token for ARM, Kubernetes the API server's version or a SelfSubjectReview)
        and return. On no credentials, expired ones, or ones the cloud refuses, raise
        `IterativeError` naming the cloud and how to log in with its own tools (AWS:
        `aws sso login`, a profile, or keys; GCP: `gcloud auth application-default
        login`; Azure: `az login`; Kubernetes: the kubeconfig context). Never include a
        credential in the message. A cloud that needs no account returns at once.
        Transient errors are retried like any call; a refusal is not.
        """
        ...

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        """Make the task's bucket (or check the user's container and use a prefix)."""
        ...

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        """Identity, network, template, group, backstop, start: each a Step whose `made`
        names the object it makes."""
        ...

    def remove(self, ref: TaskRef, made: Made) -> None:
        """Delete one object a step made. Missing is done (return or raise NotFound)."""
        ...

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        """For a state written before `TaskRef.made` existed: the objects that version's
        create made, in creation order, derived from the ref alone."""
        ...

    def install(self, ref: TaskRef) -> Install:
        """How a machine of this cloud gets the agent (the bootstrap's install part): for a
        released version a pin, else the wheel lifecycle puts at <remote>/agent/<wheel>
        (set `wheel_from_bucket`), fetched with the machine's own identity. Always
        `deps=machine_requirements(cloud)`: the machine never installs Pulumi."""
        ...

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        """The group's machines, alive or recently gone; None if the cloud cannot tell."""
        ...

    def events(self, ref: TaskRef) -> list[Event]:
        """The group's own activity (launches, terminations, preemptions, errors)."""
        ...

    def stop(self, ref: TaskRef) -> None:
        """Bring the group to zero machines and wait for them; storage is kept. A missing
        group is fine."""
        ...

    # Optional, looked up with getattr (a cloud without it never runs an index again
    # after a failed boot: the machine left its group):
    #
    #   def retrying(self, ref: TaskRef) -> Collection[int]:
    #       """The indexes the cloud will run again although their newest boot failed
    #       (k8s: the Job's backoffLimitPerIndex); status keeps them queued, not failed."""
    #
    # Optional, looked up with getattr (a cloud without it shows the bucket's logs only):
    #
    #   def live_logs(self, ref: TaskRef, tail_lines: int | None) -> dict[str, str]:
    #       """The cloud's own log of each running machine (k8s: pods/log), under a key
    #       that is not a report's machine name; status and `logs` show them beside the
    #       bucket's logs, which lag by the agent's shipping interval."""
    #
    # Optional, looked up with getattr (a cloud without it has no live prices):
    #
    #   def live_prices(self, region: str, types: tuple[str, ...]) -> Mapping[str, Price]:
    #       """Current prices of these native types in this native region, asked of the
    #       cloud (AWS: spot price history; Azure: the Retail Prices API). A figure it
    #       lacks is None and the snapshot's stands. Called at create only, never at
    #       preview; a failure is a warning and the snapshot stands (a task with a
    #       budget and no price at all is refused then, before anything is made)."""
    #
    #   live_price_source: str   # names the list in the output ("... at create" + date)
    #   (which figures count, spot only or on-demand too: the registry's `live_prices`)
    #
    # The cloud-side backstop goes at `ref.backstop_at`: the sooner of the timeout and
    # the time the budget runs out if every machine bills from create (see cost.py).
    # `machines` should fill `CloudMachine.type`, `.launched` and `.ended` from the
    # cloud's own records where it has them: spend bills those times, not the agent's.


class MachineSide(Protocol):
    """What the agent asks the machine it runs on. Constructed with the `BootConfig`;
    imports only what the agent's own install has (never Pulumi, never the backend)."""

    def index(self) -> int:
        """This machine's task index, 0..parallelism-1 (claimed, or given by the cloud)."""
        ...

    def instance_id(self) -> str:
        """The cloud's id for this machine (for reports and events)."""
        ...

    def home(self) -> Path:
        """Where the agent keeps its workdir, logs and scratch on this machine."""
        ...

    def preemption_notice(self) -> bool:
        """Has the cloud announced it will take this machine away? Cheap; polled."""
        ...

    def leave_group(self) -> None:
        """Remove this machine from its group, lowering the target, so no replacement
        comes for it and the group reaches zero at the last machine."""
        ...

    # Optional, looked up with getattr (the agent then counts from its own start):
    #
    #   def launched(self) -> float | None:
    #       """When the cloud launched this machine (billing starts), from its metadata."""
    #
    #   def machine_type(self) -> str:
    #       """The native type it runs on ("" if the metadata does not say)."""
    #
    # Both go into the boot's report, so the budget counts boot time at the right price.
    #
    #   def exit_code(self, state: str, code: int | None) -> int:
    #       """The code the machine ends with once the boot finished and left its group
    #       (`state` as in the report, `code` the script's or None). Without it: 0, as
    #       a group does not replace a machine that left it. A cloud whose scheduler
    #       reads it (k8s: the Job's pod failure policy) returns the script's."""
    #
    #   echo_log: bool
    #       """True: the agent copies the script's output to its stdout as well, where the
    #       cloud keeps the machine's own log (k8s: the container log)."""
