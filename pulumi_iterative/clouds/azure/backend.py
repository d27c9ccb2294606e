"""cloud="azure": Spot VMs in a Flexible scale set and a Blob container per task.

Steps, each recording the object it makes (lifecycle.py adds the workdir upload and
the task definition after the storage steps); delete removes those records:

    Create resource group      pulumi-iterative-<task id>, tagged; everything below lives in it
                               (with resource_group: a check that the user's group exists;
                               it is never recorded, so never deleted)
    Create storage account     HTTPS only, TLS 1.2, no public access, no shared keys; or,
                               with storage.container, a check of the user's container
                               (the task lives under <prefix>/<task id>; never deleted)
    Create container           private
    (Upload agent)             lifecycle.py, for every cloud: only for an unreleased
                               version, a wheel of this package into <remote>/agent/
    Create machine identity    a user-assigned managed identity with Storage Blob Data
                               Contributor on this container only (permission_set: that
                               identity, used as is, gets the same two task-scoped roles)
    Create network             a security group with no inbound rule, a vnet and subnet
    Create scale set           Flexible, across the zones, spot or on-demand, custom data
                               = the bootstrap, capacity 0
    Let machines leave         custom roles for the identity: read the scale set and
                               delete its instances (on the scale set alone), read VMs
                               (on the resource group, where Flexible VMs live)
    Schedule deadline backstop an autoscale setting: capacity 0 from the deadline on
    Start machines             capacity = parallelism

The backstop is in place before any machine starts. No credential is stored
anywhere: the workstation uses the caller's Azure AD login (azure-identity,
rclone's env_auth), machines their managed identity.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ... import __version__, agent_wheel
from ... import catalog as generic
from ...agent.bootstrap import Install
from ...errors import IterativeError, NotFound
from ...spec import TaskSpec
from ...status import CloudMachine, Event
from ...steps import Step
from ...storage import AGENT_DIR, Rclone, Remote
from ...task import TaskRef
from .. import machine_requirements
from ..base import Made, Price
from ..place import PlaceRecord
from . import catalog, retail
from .api import Azure, call, wait_until
from .ending import machine_ending
from .names import Names, blob_root, container_id, key, remote_env, resource_id, tags
from .resources import backstop, group, identity, network, scale_set, storage

log = logging.getLogger(__name__)

BACKSTOP_GRACE = 60.0  # after the deadline: the agent's own timeout handling goes first
STOP_DEADLINE = 600.0  # stop waits this long for the VMs to be gone
VENV = "/opt/pulumi-iterative"
WHEEL_DIR = "/opt/pulumi-iterative-agent"
# Downloads the agent's wheel with the VM's managed identity (no key, no SAS).
FETCH_PY = (
    "import sys; from azure.identity import ManagedIdentityCredential as M; "
    "from azure.storage.blob import BlobClient as B; "
    "b = B(f'https://{sys.argv[1]}.blob.core.windows.net', sys.argv[2], sys.argv[3], "
    "credential=M()); open(sys.argv[4], 'wb').write(b.download_blob().readall())"
)
# Activity log operations -> event kinds.
EVENT_KINDS = {
    "microsoft.compute/virtualmachines/write": "launch",
    "microsoft.compute/virtualmachines/delete": "terminate",
    "microsoft.compute/virtualmachines/evict/action": "interrupt",
}


@dataclass(frozen=True)
class Place(PlaceRecord):
    """The Azure part of a TaskRef: where the task's objects live (non-secret)."""

    subscription: str
    group: str
    location: str
    account: str
    container: str
    prefix: str  # "" for the task's own container; else <prefix>/<task id> in the user's
    own_storage: bool
    permission_set: str = ""  # a user-assigned identity id, used as is
    tags: tuple[tuple[str, str], ...] = ()
    version: int = 1
    own_group: bool = True  # False: the user's resource_group, never deleted

    @classmethod
    def from_ref(cls, ref: TaskRef) -> Place:
        return cls.from_extra(ref.extra, prefix="", location=ref.region)

    @property
    def group_id(self) -> str:
        return resource_id(self.subscription, self.group)

    def scale_set_id(self, names: Names) -> str:
        return resource_id(
            self.subscription,
            self.group,
            "Microsoft.Compute/virtualMachineScaleSets",
            names.scale_set,
        )


LOGIN = (
    "log in to Azure first: `az login` (and `az account set --subscription <id>`), or a "
    "service principal in AZURE_CLIENT_ID/AZURE_TENANT_ID with a federated token"
)


class Backend:
    name = "azure"

    def check_access(self, ref: TaskRef) -> None:
        """A Resource Manager token for the caller's login (az login, environment, managed
        identity), asked once before the first step: none is said with how to log in."""
        from azure.core.exceptions import ClientAuthenticationError

        from .api import caller_credential, emulator_endpoint

        if emulator_endpoint():
            return  # a loopback emulator: its own stand-in login
        try:
            caller_credential().get_token("https://management.azure.com/.default")
        except ClientAuthenticationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IterativeError(f"no usable Azure login ({first}); {LOGIN}") from None

    # --- names and budget -------------------------------------------------------------

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        from .api import subscription_id

        location = generic.resolve_region("azure", spec.region)
        names = Names(task_id)
        if spec.storage.container:
            account, _, rest = spec.storage.container.strip("/").partition("/")
            container, _, sub = rest.partition("/")
            prefix, own = key(sub, task_id), False
        else:
            account, container, prefix, own = names.storage_account, names.container, "", True
        place = Place(
            subscription_id(),
            spec.resource_group or names.resource_group,
            location,
            account,
            container,
            prefix,
            own,
            spec.permission_set,
            spec.tags,
            own_group=not spec.resource_group,
        )
        now = time.time()
        return TaskRef(
            task_id=task_id,
            cloud="azure",
            region=location,
            remote=Remote(
                blob_root(container, prefix), tuple(sorted(remote_env(account).items()))
            ).to_dict(),
            parallelism=spec.parallelism,
            created=now,
            deadline=now + spec.timeout,
            workdir=spec.storage.workdir,
            output=spec.storage.output,
            extra=place.to_dict(),
        )

    # --- steps --------------------------------------------------------------------------

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        az, place = Azure(_sub(ref)), Place.from_ref(ref)
        rg = place.group
        if place.own_group:
            steps = [
                Step(
                    "Create resource group",
                    lambda: group.create(az, rg, place.location, _tags(ref)),
                    Made.of("resource_group", group=rg),
                )
            ]
        else:  # the user's: only checked, never recorded, so never deleted
            steps = [Step(f"Check resource group {rg}", lambda: group.check(az, rg))]
        if place.own_storage:
            steps += [
                Step(
                    "Create storage account",
                    lambda: storage.create_account(
                        az, rg, place.account, place.location, _tags(ref)
                    ),
                    Made.of("storage_account", group=rg, account=place.account),
                ),
                Step(
                    "Create container",
                    lambda: storage.create_container(az, rg, place.account, place.container),
                    Made.of("container", group=rg, account=place.account),
                ),
            ]
        else:
            steps.append(
                Step(
                    f"Check container {place.account}/{place.container}",
                    lambda: storage.check_container(az, place.account, place.container),
                    Made.of("prefix", prefix=place.prefix),
                )
            )
        return steps

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        az, names, place = Azure(_sub(ref)), Names(ref.task_id), Place.from_ref(ref)
        rg = place.group
        machine = generic.resolve_machine("azure", spec.machine)
        size = machine.types[0]

        def the_identity() -> identity.Identity:
            if place.permission_set:
                return identity.read(az, place.permission_set)
            return identity.create(az, rg, names.identity, place.location, _tags(ref))

        def make_identity() -> None:
            made = the_identity()
            scope = _container_scope(az, place)
            identity.grant_blob(az, names, scope, made.principal_id)

        def make_network() -> None:
            nsg = network.create_security_group(
                az, rg, names.security_group, place.location, _tags(ref)
            )
            network.create_network(az, rg, names.network, place.location, _tags(ref), nsg)

        def make_scale_set() -> None:
            nsg = resource_id(
                place.subscription,
                rg,
                "Microsoft.Network/networkSecurityGroups",
                names.security_group,
            )
            subnet = (
                resource_id(
                    place.subscription, rg, "Microsoft.Network/virtualNetworks", names.network
                )
                + "/subnets/machines"
            )
            payload = scale_set.body(
                location=place.location,
                tags=_tags(ref),
                size=size,
                zones=list(catalog.zones(place.location)),
                spot=spec.spot,
                image=scale_set.ImageRef(generic.resolve_image("azure", spec.image)),
                disk_size=spec.disk_size,
                custom_data=bootstrap,
                identity_id=the_identity().id,
                subnet_id=subnet,
                nsg_id=nsg,
                computer_name_prefix=names.computer_name_prefix,
                encryption_at_host=size in catalog.ENCRYPTION_AT_HOST,
            )
            log.info("size %s, image %s, zones %s", size, spec.image, catalog.zones(place.location))
            scale_set.create(az, rg, names.scale_set, payload)

        def make_leave() -> None:
            identity.grant_leave(
                az, names, place.group_id, place.scale_set_id(names), the_identity().principal_id
            )

        def make_backstop() -> None:
            payload = backstop.body(
                location=place.location,
                tags=_tags(ref),
                scale_set_id=place.scale_set_id(names),
                parallelism=ref.parallelism,
                when=ref.backstop_at + BACKSTOP_GRACE,  # timeout or budget
            )
            backstop.create(az, rg, names.backstop, payload)

        who = "Check machine identity" if place.permission_set else "Create machine identity"
        return [
            Step(who, make_identity, Made.of("identity", group=rg)),
            Step("Create network", make_network, Made.of("network", group=rg)),
            Step("Create scale set", make_scale_set, Made.of("scale_set", group=rg)),
            Step("Let machines leave the group", make_leave, Made.of("leave_role", group=rg)),
            Step("Schedule deadline backstop", make_backstop, Made.of("backstop", group=rg)),
            Step(
                "Start machines",
                lambda: scale_set.set_capacity(az, rg, names.scale_set, ref.parallelism),
                Made.of("machines", group=rg),
            ),
        ]

    def remove(self, ref: TaskRef, made: Made) -> None:
        az, names, place = Azure(_sub(ref)), Names(ref.task_id), Place.from_ref(ref)
        rg = made.get("group", place.group)
        kind = made.kind
        if kind == "resource_group":
            if not place.own_group or rg.lower() != names.resource_group.lower():
                raise IterativeError(
                    f"resource group {rg} is not this task's own; it is never deleted "
                    "(was this state edited?)"
                )
            group.delete(az, rg)
        elif kind == "storage_account":
            storage.delete_account(az, rg, made.get("account"))
        elif kind == "container":
            storage.delete_container(az, rg, made.get("account"), place.container)
        elif kind == "prefix":
            _rclone(ref).purge(_remote(ref).path())
        elif kind == "identity":
            _revoke_blob(az, names, place)
            if not place.permission_set:
                identity.delete(az, rg, names.identity)
        elif kind == "network":
            network.delete_network(az, rg, names.network)
            network.delete_security_group(az, rg, names.security_group)
        elif kind == "scale_set":
            scale_set.delete(az, rg, names.scale_set)
        elif kind == "leave_role":
            identity.revoke_leave(az, names, place.group_id, place.scale_set_id(names))
        elif kind == "backstop":
            backstop.delete(az, rg, names.backstop)
        elif kind == "machines":
            self.stop(ref)
        else:
            raise IterativeError(f"the azure backend makes no {kind!r}; was this state edited?")

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        """Azure tasks always recorded what they made; this is the same list, derived."""
        place = Place.from_ref(ref)
        rg = place.group
        made = [Made.of("resource_group", group=rg)] if place.own_group else []
        if place.own_storage:
            made += [
                Made.of("storage_account", group=rg, account=place.account),
                Made.of("container", group=rg, account=place.account),
            ]
        else:
            made.append(Made.of("prefix", prefix=place.prefix))
        kinds = ("identity", "network", "scale_set", "leave_role", "backstop", "machines")
        return made + [Made.of(k, group=rg) for k in kinds]

    # --- the machine's agent ---------------------------------------------------------------

    def install(self, ref: TaskRef) -> Install:
        """A released version from PyPI; an unreleased one from the task's container,
        fetched with the VM's managed identity (no URL, token or key in custom data).
        Either way without its dependencies: the machine gets rclone, azure-identity and
        azure-storage-blob (its index claims), not Pulumi or the Resource Manager SDKs.
        A failed boot stores why and removes its VM from the scale set (`ending`). The
        agent runs as its own systemd unit (`service`), out of cloud-init's final stage
        (`KillMode=process`): a deallocate or restart stops it with SIGTERM while the
        network is up; a spot eviction's Preempt event (30 s) is the agent's own notice."""
        names, place = Names(ref.task_id), Place.from_ref(ref)
        ending = machine_ending(ref, place.scale_set_id(names))
        return replace(self._install(ref), ending=ending, service=True)

    def _install(self, ref: TaskRef) -> Install:
        deps = machine_requirements("azure")
        if agent_wheel.released():
            return Install.pip(f"pulumi-iterative=={__version__}", venv=VENV, deps=deps)
        place = Place.from_ref(ref)
        wheel = agent_wheel.wheel_name()
        dest = f"{WHEEL_DIR}/{wheel}"
        q = shlex.quote
        sdks = " ".join(q(d) for d in deps if d.startswith("azure-"))
        fetch = "\n".join(
            [
                f"mkdir -p {WHEEL_DIR}",
                f"{VENV}/bin/pip install -q --disable-pip-version-check {sdks}",
                f"{VENV}/bin/python -c {q(FETCH_PY)} {q(place.account)} {q(place.container)} "
                f"{q(key(place.prefix, AGENT_DIR, wheel))} {q(dest)}",
            ]
        )
        return Install.pip(dest, venv=VENV, fetch=fetch, deps=deps, wheel_from_bucket=True)

    # --- prices ------------------------------------------------------------------------------

    live_price_source = retail.SOURCE

    def live_prices(self, region: str, types: tuple[str, ...]) -> dict[str, Price]:
        """Each size's Linux on-demand and spot price in the region, from Azure's public
        Retail Prices API (no sign-in). Asked at create only."""
        return retail.vm_prices(region, types)

    # --- what the group sees -----------------------------------------------------------------

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        az, names, place = Azure(_sub(ref)), Names(ref.task_id), Place.from_ref(ref)
        try:
            found = scale_set.vms(az, place.group, place.scale_set_id(names))
            public = scale_set.addresses(az, place.group) if found else {}
        except NotFound:
            return []
        out = []
        for vm in found:
            provisioning, power = scale_set.states(vm)
            alive = provisioning not in ("deleting", "failed") and power in (
                "",
                "starting",
                "running",
            )
            zones = list(getattr(vm, "zones", None) or [])
            nics = _nic_ids(vm)
            address = next((public[n] for n in nics if n in public), "")
            out.append(
                CloudMachine(
                    str(vm.name),
                    alive,
                    address,
                    zones[0] if zones else "",
                    type=_vm_size(vm),
                    launched=_created(vm),
                )
            )
        # VMs the scale set no longer has (deleted, evicted) are billed by Azure's own
        # times too: its activity log says when each was made and when it went.
        listed = {m.id for m in out}
        try:
            gone = gone_machines(_activity(ref))
        except NotFound:
            gone = []
        place = Place.from_ref(ref)
        if not place.own_group:  # a shared group: only this task's VMs are its cost
            names = Names(ref.task_id)
            gone = [m for m in gone if _of_task(m.id, names, place)]
        return out + [m for m in gone if m.id not in listed]

    def events(self, ref: TaskRef) -> list[Event]:
        names, place = Names(ref.task_id), Place.from_ref(ref)
        try:
            found = _activity(ref)
        except NotFound:
            return []
        out = []
        for e in found:
            if not place.own_group and not _of_task(str(e.resource_id or ""), names, place):
                continue  # another tenant of the user's resource group
            operation = str(getattr(e.operation_name, "value", "") or "").lower()
            status = str(getattr(e.status, "value", "") or "")
            kind = "error" if status == "Failed" else EVENT_KINDS.get(operation)
            if kind is None:
                continue
            message = (e.properties or {}).get("statusMessage") or f"{operation}: {status}"
            machine = str(e.resource_id or "").rsplit("/", 1)[-1]
            out.append(Event(e.event_timestamp.timestamp(), kind, machine, str(message)))
        return out

    def stop(self, ref: TaskRef) -> None:
        """Capacity 0, every VM of the scale set removed, and wait until they are gone."""
        az, names, place = Azure(_sub(ref)), Names(ref.task_id), Place.from_ref(ref)
        try:
            scale_set.set_capacity(az, place.group, names.scale_set, 0)
        except NotFound:
            return

        def remaining() -> list[str]:
            try:
                return [
                    str(v.name) for v in scale_set.vms(az, place.group, place.scale_set_id(names))
                ]
            except NotFound:
                return []

        left = remaining()
        if left:
            try:
                scale_set.remove_vms(az, place.group, names.scale_set, left)
            except NotFound:
                pass
        wait_until(lambda: not remaining(), "the task's VMs to be gone", deadline=STOP_DEADLINE)


def _of_task(resource_id: str, names: Names, place: Place) -> bool:
    """Whether an object is the task's: named from its id (a scale set's VMs carry the
    scale set's name, cut to 50 characters) or its storage account."""
    name = resource_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return name.startswith(names.base.lower()[:50]) or (
        place.own_storage and name == place.account.lower()
    )


def _vm_size(vm: Any) -> str:
    props = getattr(vm, "properties", None)
    hardware = getattr(props, "hardware_profile", None) if props else None
    return str(getattr(hardware, "vm_size", "") or "")


GONE = (
    "microsoft.compute/virtualmachines/delete",
    "microsoft.compute/virtualmachines/evict/action",
)


def _activity(ref: TaskRef) -> list[Any]:
    """The activity log of the task's resource group since just before create (one list)."""
    az, place = Azure(_sub(ref)), Place.from_ref(ref)
    since = datetime.fromtimestamp(ref.created, tz=timezone.utc) - timedelta(minutes=5)
    flt = (
        f"eventTimestamp ge '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}' and "
        f"resourceGroupName eq '{place.group}'"
    )
    return call(lambda: list(az.monitor.activity_logs.list(filter=flt)))


def gone_machines(entries: list[Any]) -> list[CloudMachine]:
    """The VMs Azure made and then deleted or evicted, from its activity log: made at
    their first successful write, gone at the first successful delete or eviction
    (billing runs until then). A VM whose making or going is not in the log is left
    out; its boot's report times bill it (`timed_by: report`)."""
    made: dict[str, float] = {}
    ended: dict[str, float] = {}
    for e in entries:
        resource = str(e.resource_id or "")
        if "/providers/microsoft.compute/virtualmachines/" not in resource.lower():
            continue
        if str(getattr(e.status, "value", "") or "") != "Succeeded":
            continue
        operation = str(getattr(e.operation_name, "value", "") or "").lower()
        name, at = resource.rsplit("/", 1)[-1], e.event_timestamp.timestamp()
        if operation == "microsoft.compute/virtualmachines/write":
            made[name] = min(at, made.get(name, at))
        elif operation in GONE:
            ended[name] = min(at, ended.get(name, at))
    return [
        CloudMachine(name, False, launched=made[name], ended=ended[name])
        for name in sorted(ended)
        if name in made
    ]


def _created(vm: Any) -> float | None:
    """When Azure created the VM (billing starts), from its own record."""
    props = getattr(vm, "properties", None)
    created = getattr(props, "time_created", None) if props else None
    return created.timestamp() if isinstance(created, datetime) else None


def _nic_ids(vm: Any) -> list[str]:
    props = getattr(vm, "properties", None)
    profile = getattr(props, "network_profile", None) if props else None
    profile = profile or getattr(vm, "network_profile", None)
    return [str(n.id).lower() for n in (getattr(profile, "network_interfaces", None) or [])]


def _sub(ref: TaskRef) -> str:
    return str(ref.extra["subscription"])


def _tags(ref: TaskRef) -> dict[str, str]:
    return tags(ref.task_id, dict(Place.from_ref(ref).tags))


def _remote(ref: TaskRef) -> Remote:
    return Remote.from_dict(ref.remote)


def _rclone(ref: TaskRef) -> Rclone:
    return Rclone(_remote(ref))


def _container_scope(az: Azure, place: Place) -> str:
    if place.own_storage:
        return container_id(place.subscription, place.group, place.account, place.container)
    return storage.check_container(az, place.account, place.container)


def _revoke_blob(az: Azure, names: Names, place: Place) -> None:
    try:
        scope = _container_scope(az, place)
    except (NotFound, IterativeError):
        return  # the container (and its assignments) went first
    identity.unassign(az, scope, names.assignment("blob"))
