"""cloud="aws": an Auto Scaling group of EC2 machines and an S3 bucket per task.

Steps, each with its undo (lifecycle.py adds the workdir upload and the task
definition after the storage steps):

    Create bucket            private, public access blocked, SSE-S3; or, with
                             storage.container, a check of that bucket (the task
                             lives under <prefix>/<task id>; the bucket is never deleted)
    Upload agent             only for an unreleased version: a wheel of this package
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
override (AWS_ENDPOINT_URL, e.g. an emulator) is honoured by boto3 and passed to
rclone through the remote's settings.
"""

from __future__ import annotations

import logging
import re
import shlex
import time

from .. import __version__, catalog
from ..agent.bootstrap import Install
from ..errors import IterativeError, NotFound
from ..spec import TaskSpec
from ..status import CloudMachine, Event
from ..steps import Step
from ..storage import Remote
from ..task import TaskRef
from . import agent_wheel
from . import aws_objects as obj
from .aws_api import call, wait_until
from .aws_names import AGENT, Names, key, remote_env, s3_root

log = logging.getLogger(__name__)

BACKSTOP_GRACE = 60.0  # after the deadline: the agent's own timeout handling goes first
STOP_DEADLINE = 600.0  # stop waits this long for the machines to be terminated
VENV = "/opt/pulumi-iterative"
WHEEL_DIR = "/opt/pulumi-iterative-agent"
# Downloads the agent's wheel with the machine's own identity (boto3 -> IMDSv2 role).
FETCH_PY = (
    'import sys, boto3; boto3.client("s3", region_name=sys.argv[1]).download_file(*sys.argv[2:5])'
)
PERMISSION_SET = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")
STILL_THERE = ("pending", "running", "stopping", "stopped", "shutting-down")


def _activity_kind(description: str, status: str) -> str:
    if status in ("Failed", "Cancelled"):
        return "error"
    if description.startswith("Launching"):
        return "launch"
    if description.startswith("Terminating"):
        return "terminate"
    return "scaling"


class AwsBackend:
    name = "aws"

    # --- names and budget -------------------------------------------------------------

    def prepare(self, spec: TaskSpec, task_id: str) -> TaskRef:
        region = catalog.resolve_region("aws", spec.region)
        if spec.storage.container_opts:
            raise IterativeError(
                "storage.container_opts: not used on aws (the bucket's region and "
                "credentials come from the task and your environment); remove it"
            )
        if spec.permission_set and not PERMISSION_SET.match(spec.permission_set):
            raise IterativeError(
                f"permission_set: {spec.permission_set!r} is not an instance profile ARN "
                "(arn:aws:iam::<account>:instance-profile/<name>)"
            )
        names = Names(task_id)
        if spec.storage.container:
            bucket, _, sub = spec.storage.container.strip("/").partition("/")
            prefix, own = key(sub, task_id), False
        else:
            bucket, prefix, own = names.bucket, "", True
        now = time.time()
        return TaskRef(
            task_id=task_id,
            cloud="aws",
            region=region,
            remote=Remote(
                s3_root(bucket, prefix), tuple(sorted(remote_env(region).items()))
            ).to_dict(),
            parallelism=spec.parallelism,
            created=now,
            deadline=now + spec.timeout,
            workdir=spec.storage.workdir,
            output=spec.storage.output,
            extra={
                "bucket": bucket,
                "prefix": prefix,
                "own_bucket": own,
                "permission_set": spec.permission_set,
                "tags": dict(spec.tags),
            },
        )

    # --- steps --------------------------------------------------------------------------

    def storage_steps(self, ref: TaskRef) -> list[Step]:
        aws, names = obj.Aws(ref.region), Names(ref.task_id)
        bucket, prefix = ref.extra["bucket"], ref.extra["prefix"]
        if ref.extra["own_bucket"]:
            steps = [
                Step(
                    "Create bucket",
                    lambda: obj.create_bucket(aws, bucket, _tags(ref, names)),
                    lambda: obj.delete_bucket(aws, bucket),
                )
            ]
        else:
            steps = [
                Step(
                    f"Check bucket {bucket}",
                    lambda: obj.check_bucket(aws, bucket),
                    lambda: obj.delete_objects(aws, bucket, prefix),  # the task's prefix only
                )
            ]
        if not agent_wheel.released():
            wheel_key = key(prefix, AGENT, agent_wheel.wheel_name())
            steps.append(
                Step(
                    "Upload agent",
                    lambda: call(
                        aws.s3.put_object,
                        Bucket=bucket,
                        Key=wheel_key,
                        Body=agent_wheel.build_wheel(),
                    ),
                    lambda: call(aws.s3.delete_object, Bucket=bucket, Key=wheel_key),
                )
            )
        return steps

    def machine_steps(self, ref: TaskRef, spec: TaskSpec | None, bootstrap: str) -> list[Step]:
        aws, names = obj.Aws(ref.region), Names(ref.task_id)
        bucket, prefix = ref.extra["bucket"], ref.extra["prefix"]
        permission_set = str(ref.extra.get("permission_set") or "")

        def need_spec() -> TaskSpec:
            if spec is None:
                raise IterativeError("creating needs the task's spec")
            return spec

        def launch_template() -> None:
            s = need_spec()
            image = obj.resolve_image(aws, s.image)
            machine = catalog.resolve_machine("aws", s.machine)
            profile = (
                {"Arn": permission_set} if permission_set else {"Name": names.instance_profile}
            )
            data = obj.launch_template_data(
                image=image,
                instance_type=machine.types[0],
                disk_size=s.disk_size,
                security_group=obj.find_security_group(aws, names),
                profile=profile,
                user_data=bootstrap,
                tags=_tags(ref, names),
            )
            log.info("image %s (%s), machine %s", image.id, image.name, ", ".join(machine.types))
            obj.create_launch_template(aws, names, data, _tags(ref, names))

        def group() -> None:
            s = need_spec()
            machine = catalog.resolve_machine("aws", s.machine)
            obj.create_group(
                aws,
                names,
                parallelism=s.parallelism,
                policy=obj.mixed_instances_policy(names, machine.types, s.spot),
                subnets=obj.default_subnets(aws, obj.default_vpc(aws)),
                tags=_tags(ref, names),
            )

        if permission_set:
            profile_name = permission_set.rsplit("/", 1)[1]
            identity = Step(
                "Check machine identity",
                lambda: call(aws.iam.get_instance_profile, InstanceProfileName=profile_name),
            )
        else:
            identity = Step(
                "Create machine identity",
                lambda: obj.create_identity(aws, names, bucket, prefix, _tags(ref, names)),
                lambda: obj.delete_identity(aws, names),
            )
        return [
            identity,
            Step(
                "Create security group",
                lambda: obj.create_security_group(aws, names, _tags(ref, names)),
                lambda: obj.delete_security_group(aws, names),
            ),
            Step(
                "Create launch template",
                launch_template,
                lambda: obj.delete_launch_template(aws, names),
            ),
            Step("Create machine group", group, lambda: obj.delete_group(aws, names)),
            Step(
                "Schedule deadline backstop",
                lambda: obj.put_backstop(aws, names, ref.deadline + BACKSTOP_GRACE),
                lambda: obj.delete_backstop(aws, names),
            ),
            Step(
                "Start machines",
                lambda: obj.set_capacity(aws, names, ref.parallelism),
                lambda: self.stop(ref),
            ),
        ]

    # --- the machine's agent ---------------------------------------------------------------

    def install(self, ref: TaskRef) -> Install:
        """A released version from PyPI; an unreleased one from the task's bucket, fetched
        with the machine's own identity (no URL, token or key in the user-data)."""
        if agent_wheel.released():
            return Install.pip(f"pulumi-iterative[aws]=={__version__}", venv=VENV)
        wheel = agent_wheel.wheel_name()
        dest = f"{WHEEL_DIR}/{wheel}"
        source = key(ref.extra["prefix"], AGENT, wheel)
        q = shlex.quote
        fetch = "\n".join(
            [
                f"mkdir -p {WHEEL_DIR}",
                f"{VENV}/bin/pip install -q --disable-pip-version-check 'boto3>=1.34'",
                f"{VENV}/bin/python -c {q(FETCH_PY)} "
                f"{q(ref.region)} {q(ref.extra['bucket'])} {q(source)} {q(dest)}",
            ]
        )
        return Install.pip(f"{dest}[aws]", venv=VENV, fetch=fetch)

    # --- what the group sees -----------------------------------------------------------------

    def machines(self, ref: TaskRef) -> list[CloudMachine] | None:
        aws = obj.Aws(ref.region)
        return [
            CloudMachine(
                i["InstanceId"],
                obj.INSTANCE_ALIVE.get(i["State"]["Name"], False),
                i.get("PublicIpAddress") or "",
                i.get("Placement", {}).get("AvailabilityZone", ""),
            )
            for i in obj.task_instances(aws, ref.task_id)
        ]

    def events(self, ref: TaskRef) -> list[Event]:
        aws, names = obj.Aws(ref.region), Names(ref.task_id)
        try:
            activities = obj.scaling_activities(aws, names)
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
        aws, names = obj.Aws(ref.region), Names(ref.task_id)
        try:
            obj.set_capacity(aws, names, 0)
        except NotFound:
            pass

        def remaining() -> list[str]:
            return [
                i["InstanceId"]
                for i in obj.task_instances(aws, ref.task_id)
                if i["State"]["Name"] in STILL_THERE
            ]

        obj.terminate(
            aws,
            [
                i["InstanceId"]
                for i in obj.task_instances(aws, ref.task_id)
                if i["State"]["Name"] not in ("shutting-down", "terminated")
            ],
        )
        wait_until(
            lambda: not remaining(), "the task's machines to terminate", deadline=STOP_DEADLINE
        )


def _tags(ref: TaskRef, names: Names) -> list[dict[str, str]]:
    return obj.tag_list(ref.task_id, {"Name": names.base, **dict(ref.extra.get("tags") or {})})
