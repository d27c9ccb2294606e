"""cloud="aws": an Auto Scaling group of EC2 machines and an S3 bucket per task.

Steps, each recording the object it makes (lifecycle.py adds the workdir upload and
the task definition after the storage steps); delete removes those records:

    Create bucket            private, public access blocked, SSE-S3; or, with
                             storage.container, a check of that bucket (the task
                             lives under <prefix>/<task id>; the bucket is never deleted)
    (Upload agent)           lifecycle.py, for every cloud: only for an unreleased
                             version, a wheel of this package into <remote>/agent/
    Create machine identity  IAM role + instance profile scoped to this task's
                             objects and group (with permission_set: checked, used as is)
    Create security group    no inbound rules
    Create launch template   image, encrypted gp3 root, IMDSv2 required, user-data =
                             the bootstrap, tags on instances and volumes
    Create machine group     ASG over every default subnet, MixedInstancesPolicy
                             (spot or on-demand, max price, catalog fallbacks), desired 0
    Schedule deadline backstop  desired/min/max 0 shortly after the deadline
    Start machines           desired = parallelism

The backstop is scheduled before any machine starts, so no machine ever runs
without it. Credentials are never stored anywhere: on the workstation boto3 and
rclone use the caller's, on machines the instance role (IMDSv2). An endpoint
override (AWS_ENDPOINT_URL, e.g. an emulator) is honoured by boto3 and rclone
themselves, where they run: it is never stored in the task or the user-data.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import dataclass, replace

from ... import __version__, agent_wheel, catalog
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
from . import access, pricing
from .api import Aws, AwsError, call, tag_list, wait_until
from .names import Names, key, remote_env, s3_root
from .resources import backstop, bucket, group, identity, launch_template, network

log = logging.getLogger(__name__)

BACKSTOP_GRACE = 60.0  # after the deadline: the agent's own timeout handling goes first
STOP_DEADLINE = 600.0  # stop waits this long for the machines to be terminated
VENV = "/opt/pulumi-iterative"
WHEEL_DIR = "/opt/pulumi-iterative-agent"
# Downloads the agent's wheel with the machine's own identity (boto3 -> IMDSv2 role).
FETCH_PY = (
    'import sys, boto3; boto3.client("s3", region_name=sys.argv[1]).download_file(*sys.argv[2:5])'
)
STILL_THERE = ("pending", "running", "stopping", "stopped", "shutting-down")


def _activity_kind(description: str, status: str) -> str:
    if status in ("Failed", "Cancelled"):
        return "error"
    if description.startswith("Launching"):
        return "launch"
    if description.startswith("Terminating"):
        return "terminate"
    return "scaling"


@dataclass(frozen=True)
class Place(PlaceRecord):
    """The AWS part of a TaskRef: where the task's objects live (non-secret)."""

    bucket: str
    prefix: str  # "" for a bucket of the task's own; else <prefix>/<task id> in the user's
    own_bucket: bool
    permission_set: str = ""  # an instance profile ARN used as is
    tags: tuple[tuple[str, str], ...] = ()
    version: int = 1

    @classmethod
    def from_ref(cls, ref: TaskRef) -> Place:
        return cls.from_extra(ref.extra, prefix="")


class Backend:
    name = "aws"

    # --- names and budget -------------------------------------------------------------

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        region = catalog.resolve_region("aws", spec.region)
        names = Names(task_id)
        if spec.storage.container:
            name, _, sub = spec.storage.container.strip("/").partition("/")
            place = Place(name, key(sub, task_id), False, spec.permission_set, spec.tags)
        else:
            place = Place(names.bucket, "", True, spec.permission_set, spec.tags)
        now = time.time()
        return TaskRef(
            task_id=task_id,
            cloud="aws",
            region=region,
            remote=Remote(
                s3_root(place.bucket, place.prefix), tuple(sorted(remote_env(region).items()))
            ).to_dict(),
            parallelism=spec.parallelism,
            created=now,
            deadline=now + spec.timeout,
            workdir=spec.storage.workdir,
            output=spec.storage.output,
            extra=place.to_dict(),
        )

    def check_access(self, ref: TaskRef) -> None:
        caller = access.check_caller(ref.region)
        log.debug("creating as %s", caller)

    # --- steps --------------------------------------------------------------------------

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        aws, names, place = Aws(ref.region), Names(ref.task_id), Place.from_ref(ref)
        if place.own_bucket:
            steps = [
                Step(
                    "Create bucket",
                    lambda: bucket.create_bucket(aws, place.bucket, _tags(ref, names)),
                    Made.of("bucket", bucket=place.bucket),
                )
            ]
        else:
            steps = [
                Step(
                    f"Check bucket {place.bucket}",
                    lambda: bucket.check_bucket(aws, place.bucket),
                    Made.of("prefix", bucket=place.bucket, prefix=place.prefix),
                )
            ]
        return steps

    def machine_steps(self, ref: TaskRef, spec: TaskSpec, bootstrap: str) -> list[Step]:
        aws, names, place = Aws(ref.region), Names(ref.task_id), Place.from_ref(ref)
        machine = catalog.resolve_machine("aws", spec.machine)

        def make_launch_template() -> None:
            image = launch_template.resolve_image(aws, spec.image)
            if 0 < spec.disk_size < image.root_size:
                # Every launch would fail and the task would stay queued until the backstop.
                raise AwsError(
                    f"disk_size: {spec.disk_size} GB is smaller than the root snapshot of "
                    f"image {image.id} ({image.name}), {image.root_size} GB; use at least "
                    f"{image.root_size}, or -1 for the image's own size",
                    "InvalidBlockDeviceMapping",
                )
            profile = (
                {"Arn": place.permission_set}
                if place.permission_set
                else {"Name": names.instance_profile}
            )
            data = launch_template.launch_template_data(
                image=image,
                instance_type=machine.types[0],
                disk_size=spec.disk_size,
                security_group=network.find_security_group(aws, names),
                profile=profile,
                user_data=bootstrap,
                tags=_tags(ref, names),
            )
            log.info("image %s (%s), machine %s", image.id, image.name, ", ".join(machine.types))
            launch_template.create_launch_template(aws, names, data, _tags(ref, names))

        def make_group() -> None:
            group.create_group(
                aws,
                names,
                parallelism=spec.parallelism,
                policy=group.mixed_instances_policy(names, machine.types, spec.spot),
                subnets=network.default_subnets(aws, network.default_vpc(aws)),
                tags=_tags(ref, names),
            )

        if place.permission_set:
            profile_name = place.permission_set.rsplit("/", 1)[1]
            make_identity = Step(
                "Check machine identity",
                lambda: call(aws.iam.get_instance_profile, InstanceProfileName=profile_name),
            )
        else:
            make_identity = Step(
                "Create machine identity",
                lambda: identity.create_identity(
                    aws, names, place.bucket, place.prefix, _tags(ref, names)
                ),
                Made.of("identity"),
            )
        return [
            make_identity,
            Step(
                "Create security group",
                lambda: network.create_security_group(aws, names, _tags(ref, names)),
                Made.of("security_group"),
            ),
            Step("Create launch template", make_launch_template, Made.of("launch_template")),
            Step("Create machine group", make_group, Made.of("group")),
            Step(
                "Schedule deadline backstop",
                lambda: backstop.put_backstop(aws, names, ref.backstop_at + BACKSTOP_GRACE),
                Made.of("backstop"),
            ),
            Step(
                "Start machines",
                lambda: group.set_capacity(aws, names, ref.parallelism),
                Made.of("machines"),
            ),
        ]

    def remove(self, ref: TaskRef, made: Made) -> None:
        aws, names = Aws(ref.region), Names(ref.task_id)
        kind = made.kind
        if kind == "bucket":
            bucket.delete_bucket(aws, made.get("bucket"))
        elif kind == "prefix":
            bucket.delete_objects(aws, made.get("bucket"), made.get("prefix"))
        elif kind == "object":
            call(aws.s3.delete_object, Bucket=made.get("bucket"), Key=made.get("key"))
        elif kind == "identity":
            identity.delete_identity(aws, names)
        elif kind == "security_group":
            network.delete_security_group(aws, names)
        elif kind == "launch_template":
            launch_template.delete_launch_template(aws, names)
        elif kind == "group":
            group.delete_group(aws, names)
        elif kind == "backstop":
            backstop.delete_backstop(aws, names)
        elif kind == "machines":
            self.stop(ref)
        else:
            raise IterativeError(f"the aws backend makes no {kind!r}; was this state edited?")

    def legacy_made(self, ref: TaskRef) -> list[Made]:
        """What version 1 made (its undos ran on the derived names; the agent wheel was
        an object under the bucket or prefix, removed with it)."""
        place = Place.from_ref(ref)
        storage = (
            Made.of("bucket", bucket=place.bucket)
            if place.own_bucket
            else Made.of("prefix", bucket=place.bucket, prefix=place.prefix)
        )
        made = [storage]
        if not place.permission_set:
            made.append(Made.of("identity"))
        kinds = ("security_group", "launch_template", "group", "backstop", "machines")
        return made + [Made.of(k) for k in kinds]

    # --- the machine's agent ---------------------------------------------------------------

    def install(self, ref: TaskRef) -> Install:
        """A released version from PyPI; an unreleased one from the task's bucket, fetched
        with the machine's own identity (no URL, token or key in the user-data). Either
        way without its dependencies: the machine gets rclone and boto3, not Pulumi. The
        agent runs as its own systemd unit; a failed boot ends its machine (`ending`)."""
        return replace(self._install(ref), ending=machine_ending(ref), service=True)

    def _install(self, ref: TaskRef) -> Install:
        deps = machine_requirements("aws")
        if agent_wheel.released():
            return Install.pip(f"pulumi-iterative=={__version__}", venv=VENV, deps=deps)
        wheel = agent_wheel.wheel_name()
        dest = f"{WHEEL_DIR}/{wheel}"
        place = Place.from_ref(ref)
        source = key(place.prefix, AGENT_DIR, wheel)
        q = shlex.quote
        boto3 = next(d for d in deps if d.startswith("boto3"))
        fetch = "\n".join(
            [
                f"mkdir -p {WHEEL_DIR}",
                f"{VENV}/bin/pip install -q --disable-pip-version-check {q(boto3)}",
                f"{VENV}/bin/python -c {q(FETCH_PY)} "
                f"{q(ref.region)} {q(place.bucket)} {q(source)} {q(dest)}",
            ]
        )
        return Install.pip(dest, venv=VENV, fetch=fetch, deps=deps, wheel_from_bucket=True)

    # --- what the group sees -----------------------------------------------------------------

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        aws = Aws(ref.region)
        return [
            CloudMachine(
                i["InstanceId"],
                group.INSTANCE_ALIVE.get(i["State"]["Name"], False),
                i.get("PublicIpAddress") or "",
                i.get("Placement", {}).get("AvailabilityZone", ""),
                type=str(i.get("InstanceType") or ""),
                launched=i["LaunchTime"].timestamp() if i.get("LaunchTime") else None,
                ended=pricing.ended_at(i),
            )
            for i in group.task_instances(aws, ref.task_id)
        ]

    live_price_source = "AWS spot price history"

    def live_prices(self, region: str, types: tuple[str, ...]) -> dict[str, Price]:
        """The current spot price of each type: the highest over the region's zones (the
        group may launch in any of them). Asked at create only."""
        return {t: Price(None, p) for t, p in pricing.spot_prices(Aws(region), types).items()}

    def events(self, ref: TaskRef) -> list[Event]:
        aws, names = Aws(ref.region), Names(ref.task_id)
        try:
            activities = group.scaling_activities(aws, names)
        except NotFound:
            return []
        out = []
        for a in activities:
            description = str(a.get("Description", ""))
            status = str(a.get("StatusCode", ""))
            found = re.search(r"\bi-[0-9a-f]+\b", description)
            message = description
            if a.get("StatusMessage"):
                message += f": {a['StatusMessage']}"
            out.append(
                Event(
                    a["StartTime"].timestamp(),
                    _activity_kind(description, status),
                    found.group(0) if found else "",
                    message,
                )
            )
        return out

    def stop(self, ref: TaskRef) -> None:
        """Desired 0, every instance of the task terminated, and wait until they are."""
        aws, names = Aws(ref.region), Names(ref.task_id)
        try:
            group.set_capacity(aws, names, 0)
        except NotFound:
            pass

        def remaining() -> list[str]:
            return [
                i["InstanceId"]
                for i in group.task_instances(aws, ref.task_id)
                if i["State"]["Name"] in STILL_THERE
            ]

        group.terminate(
            aws,
            [
                i["InstanceId"]
                for i in group.task_instances(aws, ref.task_id)
                if i["State"]["Name"] not in ("shutting-down", "terminated")
            ],
        )
        wait_until(
            lambda: not remaining(), "the task's machines to terminate", deadline=STOP_DEADLINE
        )


def machine_ending(ref: TaskRef) -> str:
    """How an EC2 machine stores its failure and ends itself, before (or without) the
    agent: curl signs S3 and Auto Scaling requests (SigV4) with the instance role's
    credentials from IMDSv2; leaving the group decrements it, so no replacement comes,
    and is retried for a minute; then the machine powers off, which the launch
    template turns into termination. AWS_ENDPOINT_URL and the IMDS endpoint variable
    are honoured as boto3 honours them (simulators set them; EC2 does not)."""
    place = Place.from_ref(ref)
    region, names = ref.region, Names(ref.task_id)
    q = shlex.quote
    s3_path = q(f"{place.bucket}/{place.prefix}".rstrip("/"))
    return f"""\
aws_session() {{  # the instance role's credentials and this instance's id, from IMDSv2
  imds="${{AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}}"
  imds="${{imds%/}}"
  tok="$(curl -sf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \\
    "$imds/latest/api/token")" || return 1
  md() {{ curl -sf -m 5 -H "X-aws-ec2-metadata-token: $tok" "$imds/latest/meta-data/$1"; }}
  INSTANCE="$(md instance-id)" || return 1
  role="$(md iam/security-credentials/ | head -n 1)" || return 1
  creds="$(md "iam/security-credentials/$role" | tr ',' '\\n')" || return 1
  field() {{ printf '%s\\n' "$creds" | sed -n "s/.*\\"$1\\" *: *\\"\\([^\\"]*\\)\\".*/\\1/p"; }}
  AK="$(field AccessKeyId)"; SK="$(field SecretAccessKey)"; ST="$(field Token)"
  [ -n "$AK" ] && [ -n "$SK" ]
}}
aws_endpoint() {{  # <service>
  echo "${{AWS_ENDPOINT_URL:-https://$1.{region}.amazonaws.com}}"
}}
boot_upload() {{
  aws_session || return 1
  curl -sf -m 30 --aws-sigv4 "aws:amz:{region}:s3" --user "$AK:$SK" \\
    -H "x-amz-security-token: $ST" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \\
    -T "$1" "$(aws_endpoint s3)/"{s3_path}"/$2"
}}
boot_end() {{
  delay=2
  until aws_session && curl -sf -m 30 --aws-sigv4 "aws:amz:{region}:autoscaling" \\
      --user "$AK:$SK" -H "x-amz-security-token: $ST" \\
      --data "Action=TerminateInstanceInAutoScalingGroup&Version=2011-01-01" \\
      --data "InstanceId=$INSTANCE&ShouldDecrementDesiredCapacity=true" \\
      "$(aws_endpoint autoscaling)/" >/dev/null; do
    [ "$delay" -gt 32 ] && break  # about a minute: then power off all the same
    echo "leaving group {names.group} failed; again in ${{delay}}s"
    sleep "$delay"; delay=$((delay * 2))
  done
  shutdown -h now || poweroff
}}"""


def _tags(ref: TaskRef, names: Names) -> list[dict[str, str]]:
    return tag_list(ref.task_id, {"Name": names.base, **dict(Place.from_ref(ref).tags)})
