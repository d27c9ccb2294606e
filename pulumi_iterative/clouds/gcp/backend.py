"""cloud="gcp": spot machines in a regional managed instance group, a GCS bucket and a
task-scoped service account.

Steps, each with its undo (lifecycle.py adds the workdir upload and the task
definition after the storage steps):

    Create bucket             uniform bucket-level access, public access prevention
                              enforced, in the task's region, labelled; or, with
                              storage.container, a check of that bucket (the task lives
                              under <prefix>/<task id>; the bucket is never deleted)
    (Upload agent)            lifecycle.py, for every cloud: only for an unreleased
                              version, a wheel of this package into <remote>/agent/
    Create machine identity   a service account for this task (with permission_set: that
                              service account, checked and used as it is, granted nothing)
    Grant bucket access       roles/storage.objectUser on this bucket only (on a container:
                              conditioned on the task's prefix)
    Allow leaving the group   the shared custom role (get/update instance groups), bound to
                              this service account with a condition naming this task's group
    Deny inbound traffic      a firewall rule denying all ingress to the task's network tag
    Create instance template  pinned image, spot or standard, GPUs, shielded VM, the
                              bootstrap as startup-script, and the deadline backstop as
                              scheduling.terminationTime
    Create machine group      a regional MIG over the region's zones, target size 0
    Start machines            one named instance per index (target size = parallelism)

The backstop is in the template, so no machine ever runs without it: GCE deletes
every machine at the deadline (plus a grace for the agent's own timeout handling)
and refuses to make new ones after it; `stop` and delete also resize the group to
zero. Credentials are never stored anywhere: the workstation uses the caller's
application default credentials, machines their service account through the
metadata server. Emulator endpoints (tests) come from PULUMI_ITERATIVE_GCP_ENDPOINT
and STORAGE_EMULATOR_HOST (see api.py).
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ... import __version__, agent_wheel
from ... import catalog as generic
from ...agent.bootstrap import Install
from ...errors import IterativeError, NotFound
from ...spec import TaskSpec
from ...status import CloudMachine, Event
from ...steps import Step
from ...storage import AGENT_DIR, Remote
from ...task import TaskRef
from .. import machine_requirements
from ..base import Made, Price
from ..place import PlaceRecord
from . import billing, catalog
from .api import SCOPES, default_project, endpoint, wait_until
from .ending import machine_ending
from .names import Names, gcs_root, key, remote_env, storage_api
from .resources import bucket, group, identity, network, template

log = logging.getLogger(__name__)

BACKSTOP_GRACE = 120.0  # after the deadline: the agent's own timeout handling goes first
STOP_DEADLINE = 600.0  # stop waits this long for the machines to be gone
VENV = "/opt/pulumi-iterative"
WHEEL_DIR = "/opt/pulumi-iterative-agent"
NETWORK = "default"
# Downloads the agent's wheel with the machine's own token from the metadata server
# (stdlib only: nothing is installed before it), from the GCS JSON API the task's remote
# names (argv: API base, bucket, object, destination): an emulator set at create.
FETCH_PY = (
    "import json,os,sys,urllib.parse as p,urllib.request as u\n"
    'h=os.environ.get("GCE_METADATA_HOST","metadata.google.internal")\n'
    'r=u.Request("http://"+h+"/computeMetadata/v1/instance/service-accounts/default/token",'
    'headers={"Metadata-Flavor":"Google"})\n'
    't=json.load(u.urlopen(r,timeout=30))["access_token"]\n'
    'q=u.Request(sys.argv[1]+"/storage/v1/b/"+sys.argv[2]+"/o/"+p.quote(sys.argv[3],safe="")'
    '+"?alt=media",headers={"Authorization":"Bearer "+t})\n'
    'open(sys.argv[4],"wb").write(u.urlopen(q,timeout=120).read())\n'
)
# GCE's operation types on the task's machines -> (event kind, message)
OPERATION_EVENTS = {
    "insert": ("launch", "the group made machine {}"),
    "delete": ("terminate", "machine {} deleted"),
    "compute.instances.guestTerminate": ("terminate", "machine {} powered itself off"),
    "compute.instances.preempted": (
        "interrupt",
        "GCE preempted spot machine {}; the group makes it again",
    ),
}
ALIVE_ACTIONS = ("NONE", "CREATING", "CREATING_WITHOUT_RETRIES", "RECREATING", "VERIFYING")
ALIVE_STATUS = ("PROVISIONING", "STAGING", "RUNNING")


def _when(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


@dataclass(frozen=True)
class Place(PlaceRecord):
    """The GCP part of a TaskRef: where the task's objects live (non-secret)."""

    project: str
    bucket: str
    prefix: str  # "" for a bucket of the task's own; else <prefix>/<task id> in the user's
    own_bucket: bool
    zone: str = ""  # a zone the user pinned the group to ("" = the region's zones)
    permission_set: str = ""  # a service account email used as is
    network: str = NETWORK
    tags: tuple[tuple[str, str], ...] = ()
    version: int = 1

    @classmethod
    def from_ref(cls, ref: TaskRef) -> Place:
        return cls.from_extra(ref.extra, prefix="")

    def member(self, task_id: str) -> str:
        """The machines' identity as IAM names it."""
        account = self.permission_set or Names(task_id).account_email(self.project)
        return f"serviceAccount:{account}"


def machines_of(spec: TaskSpec) -> tuple[str, ...]:
    return generic.resolve_machine("gcp", spec.machine).types


LOGIN = (
    "log in to Google Cloud first: `gcloud auth application-default login`, or "
    "GOOGLE_APPLICATION_CREDENTIALS set to a service account's key file"
)


class Backend:
    name = "gcp"

    def check_access(self, ref: TaskRef) -> None:
        """The caller's application default credentials, refreshed once (a token for them):
        missing or expired ones are said before the first step, with how to log in."""
        if endpoint():
            return  # an emulator: no login
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError
        from google.auth.transport.requests import Request

        try:
            found, _ = google.auth.default(scopes=list(SCOPES))
            found.refresh(Request())
        except DefaultCredentialsError as exc:
            raise IterativeError(f"no Google Cloud credentials found ({exc}); {LOGIN}") from None
        except RefreshError as exc:
            raise IterativeError(
                f"your Google Cloud login could not be used ({exc}); {LOGIN}"
            ) from None
        except TransportError as exc:
            raise IterativeError(
                f"could not reach Google to check your login ({exc}); check the network"
            ) from None

    # --- names and budget -------------------------------------------------------------

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        project = default_project()
        if not project:
            raise IterativeError(
                "cloud gcp: no project; set GOOGLE_CLOUD_PROJECT (or `gcloud config set "
                "project <id>`) to the project the task should run in"
            )
        region, zone = catalog.split_location(generic.resolve_region("gcp", spec.region))
        names = Names(task_id)
        if spec.storage.container:
            name, _, sub = spec.storage.container.strip("/").partition("/")
            place = Place(project, name, key(sub, task_id), False)
        else:
            place = Place(project, names.bucket, "", True)
        place = replace(place, zone=zone, permission_set=spec.permission_set, tags=spec.tags)
        now = time.time()
        return TaskRef(
            task_id=task_id,
            cloud="gcp",
            region=region,
            remote=Remote(
                gcs_root(place.bucket, place.prefix), tuple(sorted(remote_env().items()))
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
        place, names = Place.from_ref(ref), Names(ref.task_id)
        project, name, prefix = place.project, place.bucket, place.prefix
        if place.own_bucket:
            steps = [
                Step(
                    "Create bucket",
                    lambda: bucket.create_bucket(project, name, ref.region, _labels(ref, names)),
                    Made.of("bucket", bucket=name),
                )
            ]
        else:
            steps = [
                Step(
                    f"Check bucket {name}",
                    lambda: bucket.check_bucket(project, name),
                    Made.of("prefix", bucket=name, prefix=prefix),  # the task's prefix only
                )
            ]
        return steps

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        project, name, prefix = place.project, place.bucket, place.prefix
        permission_set = place.permission_set
        account = permission_set or names.account_email(project)
        member = place.member(ref.task_id)
        net = place.network

        machines = machines_of(spec)

        def make_template() -> None:
            s = spec
            native_image = generic.resolve_image("gcp", s.image)
            image = template.resolve_image(native_image)
            log.info("image %s, machine %s", image.name, ", ".join(machines))
            body = template.template_body(
                names=names,
                machine=machines[0],
                image=image,
                disk_size=s.disk_size,
                spot=s.is_spot,
                account=account,
                startup_script=bootstrap,
                labels=_labels(ref, names),
                network=net,
                terminate_at=ref.backstop_at + BACKSTOP_GRACE,  # timeout or budget
                install_gpu_driver=native_image == catalog.CATALOG.images["nvidia"],
            )
            template.create_template(project, body)

        def make_group() -> None:
            body = group.group_body(
                names, project, ref.region, place.zone, machines, spot=spec.is_spot
            )
            group.create_group(project, ref.region, body)

        def make_firewall() -> None:
            network.check_network(project, net)
            network.create_firewall(project, names, net)

        def allow_leaving() -> None:
            identity.ensure_role(project)
            identity.grant_group(project, ref.region, names, member)

        if permission_set:
            steps = [
                Step(
                    "Check machine identity",
                    lambda: identity.check_account(project, permission_set),
                )
            ]
        else:
            steps = [
                Step(
                    "Create machine identity",
                    lambda: identity.create_account(project, names),
                    Made.of("identity"),
                ),
                Step(
                    "Grant bucket access",
                    lambda: bucket.grant(project, name, member, prefix),
                    Made.of("bucket_grant", bucket=name, member=member),
                ),
                Step(
                    "Allow leaving the group",
                    allow_leaving,
                    Made.of("group_grant", member=member),
                ),
            ]
        return [
            *steps,
            Step("Deny inbound traffic", make_firewall, Made.of("firewall")),
            Step("Create instance template", make_template, Made.of("template")),
            Step("Create machine group", make_group, Made.of("group")),
            Step(
                "Start machines",
                lambda: group.start(project, ref.region, names, ref.parallelism),
                Made.of("machines"),
            ),
        ]

    def remove(self, ref: TaskRef, made: Made) -> None:
        project, names, kind = _project(ref), Names(ref.task_id), made.kind
        if kind == "bucket":
            bucket.delete_bucket(project, made.get("bucket"))
        elif kind == "prefix":
            bucket.delete_objects(project, made.get("bucket"), made.get("prefix"))
        elif kind == "identity":
            identity.delete_account(project, names)
        elif kind == "bucket_grant":
            bucket.revoke(project, made.get("bucket"), made.get("member"))
        elif kind == "group_grant":
            identity.revoke_group(project, made.get("member"))
        elif kind == "firewall":
            network.delete_firewall(project, names)
        elif kind == "template":
            template.delete_template(project, names)
        elif kind == "group":
            group.delete_group(project, ref.region, names)
        elif kind == "machines":
            self.stop(ref)
        else:
            raise IterativeError(f"the gcp backend makes no {kind!r}; was this state edited?")

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        """GCP tasks were always created with made records; this derives the same list
        from the ref, for a state whose records were lost."""
        place = Place.from_ref(ref)
        name = place.bucket
        made = [
            Made.of("bucket", bucket=name)
            if place.own_bucket
            else Made.of("prefix", bucket=name, prefix=place.prefix)
        ]
        if not place.permission_set:
            member = place.member(ref.task_id)
            made += [
                Made.of("identity"),
                Made.of("bucket_grant", bucket=name, member=member),
                Made.of("group_grant", member=member),
            ]
        return made + [Made.of(k) for k in ("firewall", "template", "group", "machines")]

    # --- the machine's agent ---------------------------------------------------------------

    def install(self, ref: TaskRef) -> Install:
        """A released version from PyPI; an unreleased one from the task's bucket, fetched
        with the machine's own identity (no URL, token or key in the startup script).
        Either way without its dependencies: the machine gets rclone and google-auth,
        not Pulumi and not the compute client library. A failed boot stores why and
        ends its machine (`ending`: leave the group, else power off). The agent runs as
        its own systemd unit (`service`): GCE's stop or spot preemption is an ACPI power
        button (30 s of notice for spot), and the unit is stopped with SIGTERM while the
        network is up, instead of in the startup-script service's last kill."""
        place = Place.from_ref(ref)
        ending = machine_ending(ref, place.bucket, place.prefix, place.project)
        return replace(self._install(ref), ending=ending, service=True)

    def _install(self, ref: TaskRef) -> Install:
        deps = machine_requirements("gcp")
        if agent_wheel.released():
            return Install.pip(f"pulumi-iterative=={__version__}", venv=VENV, deps=deps)
        wheel = agent_wheel.wheel_name()
        dest = f"{WHEEL_DIR}/{wheel}"
        place = Place.from_ref(ref)
        source = key(place.prefix, AGENT_DIR, wheel)
        api = storage_api(dict(Remote.from_dict(ref.remote).env))
        q = shlex.quote
        fetch = "\n".join(
            [
                f"mkdir -p {WHEEL_DIR}",
                f"{VENV}/bin/python -c {q(FETCH_PY)} {q(api)} {q(place.bucket)} "
                f"{q(source)} {q(dest)}",
            ]
        )
        return Install.pip(dest, venv=VENV, fetch=fetch, deps=deps, wheel_from_bucket=True)

    # --- prices ------------------------------------------------------------------------------

    live_price_source = billing.SOURCE

    def live_prices(self, region: str, types: tuple[str, ...]) -> dict[str, Price]:
        """Each type's on-demand and spot price in the region, from Compute Engine's SKUs
        in the Cloud Billing Catalog (its vCPU, memory and GPU rates). Asked at create only."""
        return billing.machine_prices(region, types)

    # --- what the group sees -----------------------------------------------------------------

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        project, names = _project(ref), Names(ref.task_id)
        try:
            found = group.managed_instances(project, ref.region, names)
        except NotFound:
            return []
        zones = sorted({_zone_of(m.instance) for m in found} - {""})
        views = group.instance_views(project, zones, names) if found else {}
        out = []
        for m in found:
            view = views.get(m.name, group.InstanceView())
            out.append(
                CloudMachine(
                    str(m.id),
                    m.current_action in ALIVE_ACTIONS
                    and (m.instance_status or "RUNNING") in ALIVE_STATUS,
                    view.address,
                    _zone_of(m.instance),
                    type=view.machine_type,
                    # GCE's own start and stop times: billed time is the cloud's
                    launched=_when(view.started) if view.started else None,
                    ended=_when(view.stopped) if view.stopped else None,
                )
            )
        # Machines the group no longer lists (deleted, preempted) are billed by GCE's
        # own times too: its operations say when each was made and when it went.
        listed = {m.id for m in out}
        out += [m for m in gone_machines(group.operations(project, names)) if m.id not in listed]
        return out

    def events(self, ref: TaskRef) -> list[Event]:
        project, names = _project(ref), Names(ref.task_id)
        out: list[Event] = []
        try:
            errors = group.errors(project, ref.region, names)
        except NotFound:
            return []
        for e in errors:
            instance = e.instance_action_details.instance.rsplit("/", 1)[-1]
            message = f"{e.error.code}: {e.error.message}"
            out.append(Event(_when(e.timestamp), "error", instance, message))
        for op in group.operations(project, names):
            instance = op.target_link.rsplit("/", 1)[-1]
            kind, message = OPERATION_EVENTS.get(op.operation_type, ("", ""))
            if kind:
                out.append(Event(_when(op.insert_time), kind, instance, message.format(instance)))
        return out

    def stop(self, ref: TaskRef) -> None:
        """Target size 0, and wait until the group's machines are gone."""
        project, names = _project(ref), Names(ref.task_id)
        try:
            group.resize(project, ref.region, names, 0)
        except NotFound:
            return

        def empty() -> bool:
            try:
                return not group.managed_instances(project, ref.region, names)
            except NotFound:
                return True

        wait_until(empty, "the task's machines to be deleted", deadline=STOP_DEADLINE)


GONE = ("delete", "compute.instances.preempted")


def gone_machines(operations: list[Any]) -> list[CloudMachine]:
    """The machines GCE made and then deleted or preempted, from its own operations: made
    when their insert finished, gone when the first delete or preemption did (billing
    runs until then). A machine whose making or going is not recorded is left out; its
    boot's report times bill it (`timed_by: report`)."""
    made: dict[str, float] = {}
    ended: dict[str, float] = {}
    zones: dict[str, str] = {}
    from google.cloud import compute_v1

    done = compute_v1.Operation.Status.DONE
    for op in operations:
        if op.status != done or op.error.errors or not op.target_id or not op.end_time:
            continue
        key, at = str(op.target_id), _when(op.end_time)
        zones[key] = op.zone.rsplit("/", 1)[-1]
        if op.operation_type == "insert":
            made[key] = min(at, made.get(key, at))
        elif op.operation_type in GONE:
            ended[key] = min(at, ended.get(key, at))
    return [
        CloudMachine(key, False, "", zones[key], launched=made[key], ended=ended[key])
        for key in sorted(ended)
        if key in made
    ]


def _zone_of(instance_url: str) -> str:
    return instance_url.split("/zones/")[1].split("/")[0] if "/zones/" in instance_url else ""


def _project(ref: TaskRef) -> str:
    return Place.from_ref(ref).project


def _labels(ref: TaskRef, names: Names) -> dict[str, str]:
    return names.labels(dict(Place.from_ref(ref).tags))
