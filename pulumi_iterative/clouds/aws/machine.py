"""What the agent knows about an EC2 machine: IMDSv2, the index claim, leaving the group.

Instance metadata (IMDSv2 only, as the launch template requires): a session
token from `PUT /latest/api/token`, then GETs carrying it. The endpoint is AWS's
link-local address unless AWS_EC2_METADATA_SERVICE_ENDPOINT (the variable boto3
and the Go SDK honour too) points elsewhere. The spot interruption notice is
`/latest/meta-data/spot/instance-action`: 200 means AWS will take the machine.

The index claim. Every machine of a group boots from one user-data, so the
index comes from the bucket: `<remote>/claims/<index>.json` records
{"instance", "time", "done"}. A booting machine
  1. keeps the index whose claim already names it (the agent restarted);
  2. else takes the lowest index with no claim, by a conditional create
     (If-None-Match: *), so two machines booting together cannot both win;
  3. else takes over an index whose claimant is no longer alive in the group
     and is not done (a replaced spot machine), by a conditional overwrite
     (If-Match: the ETag it read), so two replacements cannot both win;
  4. else waits (a replacement may boot before the group has let go of the
     machine it replaces) and, after CLAIM_WAIT, leaves the group: it is surplus.
An index is done when its machine left the group (decrementing the desired
capacity, so no replacement will come for it): `leave_group` marks the claim done
first. The machine's identity may read and write only its task's prefix and
terminate instances only in its own group.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import NotFound
from ...records import BootConfig
from ...storage import TASK_FILE
from .api import AwsError, call, client
from .names import CLAIMS, LEAVING, Names, key, region_of, split_root

log = logging.getLogger(__name__)

IMDS = "http://169.254.169.254"
IMDS_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_TTL = 21600
CLAIM_WAIT = 600.0  # seconds a machine waits for an index to come free
LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict")


class Imds:
    """A minimal IMDSv2 client (stdlib only)."""

    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        self.base = (endpoint or os.environ.get(IMDS_ENV) or IMDS).rstrip("/")
        self.timeout = timeout
        self.token = ""
        self.expires = 0.0

    def _token(self, fresh: bool = False) -> str:
        if fresh or not self.token or time.time() > self.expires - 60:
            request = urllib.request.Request(
                self.base + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                self.token = answer.read().decode()
            self.expires = time.time() + TOKEN_TTL
        return self.token

    def get(self, path: str, attempts: int = 3) -> str | None:
        """The value at path; None when the service says 404 (not there)."""
        for attempt in range(attempts):
            try:
                request = urllib.request.Request(
                    self.base + path,
                    headers={"X-aws-ec2-metadata-token": self._token(fresh=attempt > 0)},
                )
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return str(answer.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401 or attempt == attempts - 1:  # 401: token expired, renew
                    raise
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * 2**attempt)
        return None


class MachineSide:
    def __init__(self, config: BootConfig) -> None:
        self.config = config
        self.names = Names(config.task_id)
        self.bucket, self.prefix = split_root(str(config.remote["root"]))
        self.region = region_of(config.remote)
        self.imds = Imds()
        self._instance = ""
        self._index: int | None = None
        self._document: dict[str, Any] | None = None

    # --- MachineSide -------------------------------------------------------------------

    def instance_id(self) -> str:
        if not self._instance:
            found = self.imds.get("/latest/meta-data/instance-id")
            if not found:
                raise RuntimeError("instance metadata has no instance-id")
            self._instance = found.strip()
        return self._instance

    def home(self) -> Path:
        return Path.home() / "pulumi-iterative"

    def preemption_notice(self) -> bool:
        try:
            return self.imds.get("/latest/meta-data/spot/instance-action", attempts=1) is not None
        except Exception as exc:  # the notice is best effort; SIGTERM still comes
            log.debug("spot notice check failed: %s", exc)
            return False

    def launched(self) -> float | None:
        """pendingTime of the instance identity document: when EC2 launched it."""
        stamp = self._identity().get("pendingTime")
        if not stamp:
            return None
        return (
            datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=timezone.utc)
            .timestamp()
        )

    def machine_type(self) -> str:
        return str(self._identity().get("instanceType") or "")

    def _identity(self) -> dict[str, Any]:
        if self._document is None:
            found = self.imds.get("/latest/dynamic/instance-identity/document")
            self._document = json.loads(found) if found else {}
        return self._document

    def index(self) -> int:
        if self._index is None:
            self._index = self._claim()
        return self._index

    def leave_group(self) -> None:
        """Mark this machine's index done, then leave with the desired capacity decremented."""
        me = self.instance_id()
        if self._index is not None:
            self._write_claim(self._index, me, done=True, condition={})
        autoscaling = client("autoscaling", self.region, on_machine=True)
        call(
            autoscaling.terminate_instance_in_auto_scaling_group,
            InstanceId=me,
            ShouldDecrementDesiredCapacity=True,
        )

    # --- the claim ----------------------------------------------------------------------

    def _claim(self) -> int:
        """Rounds of the protocol until an index is ours (see the module docstring)."""
        end = time.monotonic() + CLAIM_WAIT
        delay = 1.0
        while True:
            try:
                found = self._claim_round()
            except Exception as exc:  # a machine at boot: IMDS, credentials, S3 may lag
                log.warning("claiming an index failed (%s); trying again", exc)
                found = None
            if found is not None:
                return found
            if time.monotonic() + delay > end:
                log.warning("no index came free in %.0fs: this machine is surplus", CLAIM_WAIT)
                self.leave_group()
                raise RuntimeError("no task index is free for this machine; it left the group")
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(15.0, delay * 2)

    def _claim_round(self) -> int | None:
        """One round: the index claimed, or None if none is free right now."""
        me = self.instance_id()
        s3 = client("s3", self.region, on_machine=True)
        task = json.loads(
            call(s3.get_object, Bucket=self.bucket, Key=key(self.prefix, TASK_FILE))["Body"].read()
        )
        claims = self._claims(s3)
        for index, (claim, _) in claims.items():
            if claim.get("instance") == me:
                log.info("index %d: already claimed by this machine", index)
                return index
        alive = self._alive()
        for index in range(int(task["parallelism"])):
            found = claims.get(index)
            if found is None:
                condition = {"IfNoneMatch": "*"}
            else:
                claim, etag = found
                if claim.get("done") or claim.get("instance") in alive:
                    continue
                condition = {"IfMatch": etag}
            if self._write_claim(index, me, done=False, condition=condition):
                took = f" from {found[0].get('instance')}" if found else ""
                log.info("claimed index %d%s", index, took)
                return index
        return None

    def _claims(self, s3: Any) -> dict[int, tuple[dict[str, Any], str]]:
        prefix = key(self.prefix, CLAIMS) + "/"
        listed = call(s3.list_objects_v2, Bucket=self.bucket, Prefix=prefix)
        out: dict[int, tuple[dict[str, Any], str]] = {}
        for item in listed.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name.endswith(".json") or not name[: -len(".json")].isdigit():
                continue
            try:
                got = call(s3.get_object, Bucket=self.bucket, Key=item["Key"])
            except Exception as exc:  # deleted meanwhile: the next round sees it
                log.debug("claim %s: %s", name, exc)
                continue
            try:
                body = json.loads(got["Body"].read())
            except ValueError:
                body = {}
            out[int(name[: -len(".json")])] = (body, str(got["ETag"]))
        return out

    def _alive(self) -> set[str]:
        groups = call(
            client("autoscaling", self.region, on_machine=True).describe_auto_scaling_groups,
            AutoScalingGroupNames=[self.names.group],
        )["AutoScalingGroups"]
        return {
            i["InstanceId"]
            for g in groups
            for i in g.get("Instances", [])
            if i.get("LifecycleState") not in LEAVING
        }

    def _write_claim(self, index: int, me: str, *, done: bool, condition: dict[str, str]) -> bool:
        body = json.dumps({"instance": me, "time": time.time(), "done": done}).encode()
        try:
            call(
                client("s3", self.region, on_machine=True).put_object,
                Bucket=self.bucket,
                Key=key(self.prefix, CLAIMS, f"{index}.json"),
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except NotFound:  # If-Match on a claim deleted meanwhile
            return False
        except AwsError as exc:
            if exc.code in LOST_RACE:
                return False
            raise
        return True
