"""cloud="k8s": an Indexed Job per task, on the cluster of the user's kubeconfig.

Steps (lifecycle.py adds the workdir upload and the task definition after storage):

    Create volume             a PersistentVolumeClaim, the task's bucket (ReadWriteMany
                              when parallelism > 1); or, with storage.container, a check
                              of that object store (the task lives under <prefix>/<id>)
    Create machine identity   ServiceAccount + Role (get only this task's ConfigMap,
                              Secret and Job) + RoleBinding; with permission_set: a check
                              that the named service account exists
    Create task config        ConfigMap: the bootstrap, the task definition without
                              secrets, and the agent's wheel for an unreleased version
    Create task secret        Secret: secret_environment (and object store credentials)
    Start job                 the Indexed Job: machines, replacement of lost pods per
                              index, the pod failure policy and the deadline backstop

The workstation reaches a volume bucket through a short-lived transfer pod per
operation (on the node of the task's pod when the volume is ReadWriteOnce;
`open_bucket`, see transfer.py). Which cluster: `region` names the
kubeconfig context (`local` = the current one; in a pod without a kubeconfig, the
pod's own cluster and service account); `namespace` (else the context's) names the
namespace. Both are resolved once at create and kept in the task's state as the
cluster's server URL and CA fingerprint and the namespace, so refresh and destroy use
the same cluster from anywhere, through whichever context of the caller points at it.
Nothing secret is kept in the state or the Job spec.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ... import __version__, agent_wheel
from ...agent.bootstrap import Install
from ...errors import IterativeError, NotFound
from ...spec import TaskSpec
from ...status import CloudMachine, Event
from ...steps import Step
from ...storage import Rclone, Remote
from ...task import TaskRef
from .. import machine_requirements
from ..base import Made
from ..place import PlaceRecord
from . import catalog, transfer
from .api import K8sError, Kube, Target, call, cluster_identity, namespace_of, wait_until
from .machine import INDEX_ENV
from .names import BOOTSTRAP_KEY, BUCKET_ROOT, POD_HOME, SCRATCH_DIR, TASK_DIR, TASK_KEY, Names
from .resources import claim, config, identity, job
from .rules import CONTAINER, SECRET_OPTION

log = logging.getLogger(__name__)

BACKSTOP_GRACE = 60  # after the deadline: the agent's own timeout handling goes first
STOP_DEADLINE = job.GRACE_SECONDS + 120.0
CLAIM_GONE_DEADLINE = 300.0
# in the scratch emptyDir: the pods run as a non-root user (restricted Pod Security)
VENV = f"{POD_HOME}/{SCRATCH_DIR}/venv"
# Kubernetes event reason -> our event kind
EVENT_KINDS = {
    "SuccessfulCreate": "launch",
    "Scheduled": "launch",
    "Started": "launch",
    "Killing": "terminate",
    "SuccessfulDelete": "terminate",
    "Preempted": "interrupt",
    "Evicted": "interrupt",
    "FailedScheduling": "error",
    "FailedCreate": "error",
    "FailedMount": "error",
    "Failed": "error",
    "BackoffLimitExceeded": "error",
    "DeadlineExceeded": "error",
    "FailedIndexes": "error",
    "Completed": "finish",
    "Suspended": "scaling",
    "Resumed": "scaling",
}
LIVE_PHASES = ("Pending", "Running")
TAGS_ANNOTATION = "pulumi-iterative/tags"


@dataclass(frozen=True)
class Place(PlaceRecord):
    """The k8s part of a TaskRef (`extra`): where the task lives, all plain strings."""

    context: str
    namespace: str
    container: str = ""  # "" = a volume in the cluster
    permission_set: str = ""
    storage_class: str = ""
    size_gb: int = claim.DEFAULT_SIZE_GB
    secret_env: tuple[str, ...] = ()  # names of the container credentials' variables
    # The cluster, pinned at create (version 2): any context of the caller's kubeconfig
    # that points at it works, whatever its name (version 1 pinned the context's name).
    server: str = ""
    ca: str = ""
    version: int = 2

    @classmethod
    def from_ref(cls, ref: TaskRef) -> Place:
        return cls.from_extra(ref.extra, context="", version=1)

    def kube(self) -> Kube:
        return Kube(self.target())

    def target(self) -> Target:
        return Target(
            context=self.context, namespace=self.namespace, server=self.server, ca=self.ca
        )


def container_remote(
    container: str, opts: dict[str, str], task_id: str
) -> tuple[Remote, dict[str, str]]:
    """storage.container -> (the remote, with non-secret options; the secret options as
    the rclone variables the pods get from the task's Secret)."""
    found = CONTAINER.match(container)
    if not found:
        raise IterativeError(f"storage.container: {container!r} is not <type>:<bucket>[/prefix]")
    kind, bucket_name = found.group("type"), found.group("bucket")
    prefix = "/".join(p for p in ((found.group("prefix") or "").strip("/"), task_id) if p)
    plain, secret = {}, {}
    for name, value in opts.items():
        variable = f"RCLONE_{kind.upper()}_{name.upper()}"
        (secret if SECRET_OPTION.search(name) else plain)[variable] = value
    if kind == "s3":
        endpoint = plain.get("RCLONE_S3_ENDPOINT", "")
        plain.setdefault("RCLONE_S3_PROVIDER", "Other" if endpoint else "AWS")
        plain.setdefault("RCLONE_S3_NO_CHECK_BUCKET", "true")  # the bucket is yours, made
        plain.setdefault("RCLONE_S3_ENV_AUTH", "true")  # the workstation: your own credentials
        if endpoint.startswith("http://"):
            # plain HTTP (an endpoint inside the cluster): trailing checksums need TLS
            plain.setdefault("RCLONE_S3_USE_UNSIGNED_PAYLOAD", "true")
            plain.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    return Remote(f":{kind}:{bucket_name}/{prefix}", tuple(sorted(plain.items()))), secret


class Backend:
    name = "k8s"

    def check_access(self, ref: TaskRef) -> None:
        """The kubeconfig and its context load (K8sError naming the file and the fix if
        not). The cluster itself answers at the first step: a kubeconfig holds no
        credential that can be checked without asking it."""
        _ = Place.from_ref(ref).kube().client

    # --- names and budget ------------------------------------------------------------

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        # The cluster is pinned at create (its server and CA, and the namespace): a later
        # change of the current context must not send refresh or destroy to another
        # cluster, and a teammate's context for the same cluster may have another name.
        cluster = cluster_identity(Target(context=catalog.resolve_context(spec.region)))
        namespace = namespace_of(Target(context=cluster.context, namespace=spec.namespace))
        opts = dict(spec.storage.container_opts)
        secret_env: dict[str, str] = {}
        if spec.storage.container:
            remote, secret_env = container_remote(spec.storage.container, opts, task_id)
        else:
            remote = Remote(BUCKET_ROOT)
        now = time.time()
        place = Place(
            context=cluster.context,
            namespace=namespace,
            server=cluster.server,
            ca=cluster.ca,
            container=spec.storage.container,
            permission_set=spec.permission_set,
            storage_class=opts.get("storage_class", "") if not spec.storage.container else "",
            size_gb=spec.disk_size if spec.disk_size > 0 else claim.DEFAULT_SIZE_GB,
            secret_env=tuple(sorted(secret_env)),
        )
        return TaskRef(
            task_id=task_id,
            cloud="k8s",
            region=spec.region,
            remote=remote.to_dict(),
            parallelism=spec.parallelism,
            created=now,
            deadline=now + spec.timeout,
            workdir=spec.storage.workdir,
            output=spec.storage.output,
            extra=place.to_dict(),
        )

    # --- steps -------------------------------------------------------------------------

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        if place.container:
            return [
                Step(
                    f"Check container {place.container}",
                    lambda: _check_container(ref),
                    Made.of("prefix"),
                )
            ]
        body = claim.claim_body(
            names,
            parallelism=ref.parallelism,
            size_gb=place.size_gb,
            storage_class=place.storage_class,
        )
        return [
            Step(
                "Create volume",
                lambda: claim.create_claim(place.kube(), names, body),
                Made.of("claim", name=names.claim),
            )
        ]

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        kube = place.kube()
        if place.permission_set:
            account = place.permission_set
            identity_step = Step(
                "Check service account",
                lambda: identity.check_service_account(kube, account),
            )
        else:
            account = names.service_account
            identity_step = Step(
                "Create machine identity",
                lambda: identity.create_identity(kube, names),
                Made.of("identity"),
            )
        secrets = dict(spec.secret_environment)
        if place.container:
            _, container_secrets = container_remote(
                place.container, dict(spec.storage.container_opts), ref.task_id
            )
            secrets.update(container_secrets)

        def make_config() -> None:
            files = {BOOTSTRAP_KEY: bootstrap, TASK_KEY: _public_definition(spec, ref)}
            binary = {}
            if not agent_wheel.released():
                binary[agent_wheel.wheel_name()] = agent_wheel.build_wheel()
            config.create_config_map(kube, names, files, binary)

        def start_job() -> None:
            shape = catalog.resolve_machine(spec.machine)
            body = job.job_body(
                names,
                image=catalog.resolve_image(spec.image),
                machine=shape,
                spot=spec.spot,
                parallelism=spec.parallelism,
                # the sooner of the timeout and the budget
                deadline_seconds=math.ceil(ref.backstop_at - time.time()) + BACKSTOP_GRACE,
                service_account=account,
                secret_keys=sorted(secrets),
                plain_env={},
                bucket_claim=not place.container,
                labels={},
                # tags may not fit label syntax: kept whole, as one annotation
                annotations={TAGS_ANNOTATION: json.dumps(dict(spec.tags))} if spec.tags else {},
            )
            job.create_job(kube, names, body)

        return [
            identity_step,
            Step("Create task config", make_config, Made.of("config")),
            Step(
                "Create task secret",
                lambda: config.create_secret(kube, names, secrets),
                Made.of("secret"),
            ),
            Step("Start job", start_job, Made.of("job")),
        ]

    def remove(self, ref: TaskRef, made: Made) -> None:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        kube = place.kube()
        kind = made.kind
        if kind == "job":
            job.delete_job(kube, names, wait=STOP_DEADLINE)
        elif kind == "secret":
            config.delete_secret(kube, names)
        elif kind == "config":
            config.delete_config_map(kube, names)
        elif kind == "identity":
            identity.delete_identity(kube, names)
        elif kind == "claim":
            transfer.remove_transfer_pods(kube, names)
            claim.delete_claim(kube, names)
            wait_until(
                lambda: not _claim_exists(kube, names),
                f"volume {names.claim} to be deleted",
                deadline=CLAIM_GONE_DEADLINE,
            )
        elif kind == "prefix":
            rclone = Rclone(Remote.from_dict(ref.remote))
            with contextlib.suppress(NotFound):
                rclone.run("purge", rclone.remote.path())
        else:
            raise IterativeError(f"k8s cannot remove a {kind!r}: this version does not know it")

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        """No k8s state predates `made`; derived from the ref all the same."""
        place, names = Place.from_ref(ref), Names(ref.task_id)
        made = [Made.of("prefix") if place.container else Made.of("claim", name=names.claim)]
        if not place.permission_set:
            made.append(Made.of("identity"))
        return [*made, Made.of("config"), Made.of("secret"), Made.of("job")]

    # --- the bucket, as the workstation reaches it -------------------------------------

    @contextlib.contextmanager
    def open_bucket(self, ref: TaskRef, *, fresh: bool = False) -> Iterator[Remote]:
        place = Place.from_ref(ref)
        if place.container:
            yield Remote.from_dict(ref.remote)
            return
        kube, names = place.kube(), Names(ref.task_id)
        found = call(kube.core.read_namespaced_persistent_volume_claim, names.claim, kube.namespace)
        shared = "ReadWriteMany" in (found.spec.access_modes or [])
        with transfer.open_bucket(kube, names, shared=shared, fresh=fresh) as remote:
            yield remote

    # --- the machine's agent ------------------------------------------------------------

    def install(self, ref: TaskRef) -> Install:
        """A released version from PyPI; an unreleased one from the wheel in the task's
        ConfigMap, mounted in the pod (no download, no credential)."""
        deps = machine_requirements("k8s")  # rclone; no SDK, no Pulumi on the pod
        if agent_wheel.released():
            requirement = f"pulumi-iterative=={__version__}"
        else:
            requirement = f"{POD_HOME}/{TASK_DIR}/{agent_wheel.wheel_name()}"
        installed = Install.pip(requirement, venv=VENV, deps=deps)
        return replace(installed, ending=pod_ending(Place.from_ref(ref)))

    # --- what the cluster sees ----------------------------------------------------------

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        out = []
        for pod in job.task_pods(place.kube(), names):
            status = pod.status
            alive = (status and status.phase) in LIVE_PHASES and not pod.metadata.deletion_timestamp
            out.append(
                CloudMachine(
                    pod.metadata.name,
                    bool(alive),
                    (status and status.pod_ip) or "",
                    pod.spec.node_name or "",
                )
            )
        return out

    def live_logs(self, ref: TaskRef, tail_lines: int | None = None) -> dict[str, str]:
        """Each running pod's container log, under `pod/<name>`: the script's output as
        it happens, before the agent ships it to the bucket. A pod that ends in between
        has its log in the bucket: skipped."""
        place, names = Place.from_ref(ref), Names(ref.task_id)
        kube, out = place.kube(), {}
        for pod in job.task_pods(kube, names):
            if (pod.status and pod.status.phase) != "Running" or pod.metadata.deletion_timestamp:
                continue
            with contextlib.suppress(NotFound, K8sError):  # gone or not started: no live log
                out[f"pod/{pod.metadata.name}"] = job.pod_log(kube, pod.metadata.name, tail_lines)
        return out

    def retrying(self, ref: TaskRef) -> set[int]:
        """A failed pod's index is run again while backoffLimitPerIndex allows (the
        agent exits with the script's code); the Job's status says which indexes are
        still to run."""
        place, names = Place.from_ref(ref), Names(ref.task_id)
        return job.indexes_to_run(place.kube(), names, ref.parallelism)

    def events(self, ref: TaskRef) -> list[Event]:
        place, names = Place.from_ref(ref), Names(ref.task_id)
        out = self._pod_failures(place.kube(), names)
        for event in job.namespace_events(place.kube()):
            involved = event.involved_object
            name = (involved and involved.name) or ""
            if name != names.job and not name.startswith(f"{names.job}-"):
                continue
            when = event.last_timestamp or event.event_time or event.first_timestamp
            kind = EVENT_KINDS.get(event.reason or "", "scaling")
            if event.type == "Warning" and kind in ("scaling", "launch"):
                kind = "error"
            out.append(
                Event(
                    when.timestamp() if when else time.time(),
                    kind,
                    name if name != names.job else "",
                    f"{event.reason}: {event.message}",
                )
            )
        return out

    @staticmethod
    def _pod_failures(kube: Kube, names: Names) -> list[Event]:
        """Each failed pod's termination message, as an error event: the reason a boot
        gives there reaches status even when its report could not reach the bucket (an
        object store before the agent's rclone is installed)."""
        out = []
        for pod in job.task_pods(kube, names):
            for container in (pod.status and pod.status.container_statuses) or []:
                ended = container.state and container.state.terminated
                if not ended or not ended.exit_code or not ended.message:
                    continue
                when = ended.finished_at.timestamp() if ended.finished_at else time.time()
                name = pod.metadata.name
                out.append(
                    Event(
                        when,
                        "error",
                        name,
                        f"pod {name} failed (exit {ended.exit_code}): {why(ended.message)}",
                    )
                )
        return out

    def stop(self, ref: TaskRef) -> None:
        """Suspend the Job (it and its history stay) and wait for its pods to end."""
        place, names = Place.from_ref(ref), Names(ref.task_id)
        kube = place.kube()
        try:
            job.suspend_job(kube, names)
        except NotFound:
            return
        job.wait_no_live_pods(kube, names, deadline=STOP_DEADLINE)


def pod_ending(place: Place) -> str:
    """How a pod stores a failed boot's report and log before (or without) the agent:
    a copy into the mounted volume. An object store needs the agent's rclone, which a
    failed install may lack: there the report goes to the container log, whose end is
    the pod's termination message (`FallbackToLogsOnError`), which status reads
    (`events`). Its index is the Job's, so status waits for the Job's retry of it.
    Ending is exiting: the bootstrap exits non-zero, the pod fails, and the Job retries
    or fails the index."""
    if place.container:
        upload = (
            '  case "$2" in status/*) cat "$1" ;; esac  # the last line: the termination message\n'
            "  return 1  # the object store is reached with the agent's rclone"
        )
    else:
        upload = (
            '  mkdir -p "$(dirname "$BOOT_BUCKET/$2")" && cp "$1" "$BOOT_BUCKET/$2.tmp" &&\n'
            '    mv "$BOOT_BUCKET/$2.tmp" "$BOOT_BUCKET/$2"'
        )
    return f"""\
BOOT_INDEX="${{{INDEX_ENV}:--1}}"
BOOT_BUCKET="$(pwd)/{BUCKET_ROOT}"  # the task's volume, mounted in the working directory
# A non-root user (restricted Pod Security) has no home of its own: the scratch
# emptyDir is, besides the volume, the one place it may write (pip, the script).
export HOME="$(pwd)/{SCRATCH_DIR}"
boot_upload() {{
{upload}
}}"""


def why(message: str) -> str:
    """The reason in a termination message: the last boot report's (a JSON line the
    bootstrap prints when it cannot store it), else the message's last line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if isinstance(report, dict) and report.get("reason"):
                return str(report["reason"])
    return lines[-1] if lines else ""


def _claim_exists(kube: Kube, names: Names) -> bool:
    try:
        call(kube.core.read_namespaced_persistent_volume_claim, names.claim, kube.namespace)
    except NotFound:
        return False
    return True


def _check_container(ref: TaskRef) -> None:
    """The object store answers a listing with the workstation's own credentials."""
    rclone = Rclone(Remote.from_dict(ref.remote))
    root = rclone.remote.root.rsplit("/", 1)[0]
    try:
        rclone.run("lsjson", "--max-depth", "1", root)
    except NotFound:
        pass  # the prefix does not exist yet: the upload makes it


def _public_definition(spec: TaskSpec, ref: TaskRef) -> str:
    """The task definition without secrets, for people reading the ConfigMap."""
    return json.dumps(
        {
            "task_id": ref.task_id,
            "script": spec.script,
            "environment": dict(spec.environment),
            "secret_environment": sorted(dict(spec.secret_environment)),  # names only
            "parallelism": spec.parallelism,
            "deadline": ref.deadline,
        },
        sort_keys=True,
    )
