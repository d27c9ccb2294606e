"""What the agent knows about an Azure VM: IMDS, its index claim, leaving the scale set.

Instance Metadata Service (`Metadata: true` on every request):
- `/metadata/instance/compute`: the VM's name, resource group, subscription, scale set;
- `/metadata/identity/oauth2/token`: a token of the VM's managed identity (the
  task's, never the caller's) for Resource Manager or Storage;
- `/metadata/scheduledevents`: a `Preempt` event naming this VM is the spot eviction
  notice (about 30 s ahead), the moment to checkpoint.
The endpoint is Azure's link-local address unless PULUMI_ITERATIVE_IMDS_ENDPOINT
points elsewhere (machine simulators only; nothing stored in Azure sets it).

The index claim works as on AWS (see clouds/aws/machine.py): `<remote>/claims/<i>.json`
blobs written with If-None-Match: * (a free index) or If-Match: <etag> (taking over
the index of a VM that is no longer in the scale set), so two machines never win
the same index. Leaving: the claim is marked done, then the VM removes itself from
its scale set (delete instances, which lowers the capacity), the one compute action
its identity may take.

Only the standard library and azure-storage-blob/azure-identity (for the claims)
are used: no Resource Manager SDK on the machine, no Pulumi, no backend.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ...records import BootConfig
from ...storage import TASK_FILE
from .names import blob_endpoint, key, split_root

log = logging.getLogger(__name__)

IMDS = "http://169.254.169.254"
IMDS_ENV = "PULUMI_ITERATIVE_IMDS_ENDPOINT"
ARM = "https://management.azure.com"
ARM_ENV = "PULUMI_ITERATIVE_ARM_ENDPOINT"
COMPUTE_API = "2026-04-01"
INSTANCE_API = "2021-02-01"
TOKEN_API = "2018-02-01"
EVENTS_API = "2020-07-01"
CLAIMS = "claims"
CLAIM_WAIT = 600.0  # seconds a machine waits for an index to come free
LEAVE_DEADLINE = 300.0


class Imds:
    """A minimal Azure IMDS client (stdlib only)."""

    def __init__(self, endpoint: str | None = None, timeout: float = 3.0) -> None:
        self.base = (endpoint or os.environ.get(IMDS_ENV) or IMDS).rstrip("/")
        self.timeout = timeout
        self.tokens: dict[str, tuple[str, float]] = {}

    def get(self, path: str, attempts: int = 3, **query: str) -> Any:
        """GET path with query (`api_version` is sent as `api-version`), as JSON."""
        query = {k.replace("_", "-"): v for k, v in query.items()}
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}"
        for attempt in range(attempts):
            try:
                request = urllib.request.Request(url, headers={"Metadata": "true"})
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return json.loads(answer.read() or b"null")
            except (urllib.error.HTTPError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * 2**attempt)
        return None

    def token(self, resource: str) -> str:
        """The VM identity's access token for resource (cached until near expiry)."""
        found = self.tokens.get(resource)
        if found and found[1] > time.time() + 120:
            return found[0]
        answer = self.get(
            "/metadata/identity/oauth2/token", api_version=TOKEN_API, resource=resource
        )
        token, expires = str(answer["access_token"]), float(answer["expires_on"])
        self.tokens[resource] = (token, expires)
        return token


def arm_endpoint() -> str:
    value = os.environ.get(ARM_ENV, "").strip().rstrip("/")
    if value and not value.startswith(("http://127.0.0.1", "http://localhost")):
        raise RuntimeError(f"{ARM_ENV} may only name a loopback emulator")
    return value or ARM


class MachineSide:
    def __init__(self, config: BootConfig) -> None:
        self.config = config
        self.container, self.prefix = split_root(str(config.remote["root"]))
        self.remote_env = dict(config.remote.get("env") or {})
        self.imds = Imds()
        self._compute: dict[str, Any] | None = None
        self._index: int | None = None

    # --- what the machine is ----------------------------------------------------------------

    def compute(self) -> dict[str, Any]:
        if self._compute is None:
            self._compute = dict(
                self.imds.get("/metadata/instance/compute", api_version=INSTANCE_API, format="json")
            )
        return self._compute

    def instance_id(self) -> str:
        return str(self.compute()["name"])

    def machine_type(self) -> str:
        """The VM size, from IMDS (for the boot's report and its price)."""
        return str(self.compute().get("vmSize") or "")

    def home(self) -> Path:
        return Path.home() / "pulumi-iterative"

    def preemption_notice(self) -> bool:
        try:
            events = self.imds.get("/metadata/scheduledevents", attempts=1, api_version=EVENTS_API)
        except Exception as exc:  # best effort; the VM's shutdown still comes
            log.debug("scheduled events check failed: %s", exc)
            return False
        me = self.instance_id()
        return any(
            e.get("EventType") == "Preempt" and me in (e.get("Resources") or [])
            for e in (events or {}).get("Events") or []
        )

    # --- leaving the scale set -----------------------------------------------------------

    def scale_set_id(self) -> str:
        c = self.compute()
        return (
            f"/subscriptions/{c['subscriptionId']}/resourceGroups/{c['resourceGroupName']}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{c['vmScaleSetName']}"
        )

    def _arm(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        url = f"{arm_endpoint()}{path}"
        token = self.imds.token(ARM + "/")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = answer.read()
            return answer.status, dict(answer.headers), json.loads(raw) if raw else None

    def leave_group(self) -> None:
        """Mark this machine's index done, then remove this VM from its scale set."""
        me = self.instance_id()
        if self._index is not None:
            self._write_claim(self._index, me, done=True, condition={})
        status, headers, _ = self._arm(
            "POST", f"{self.scale_set_id()}/delete?api-version={COMPUTE_API}", {"instanceIds": [me]}
        )
        poll = headers.get("Azure-AsyncOperation") or headers.get("Location")
        end = time.monotonic() + LEAVE_DEADLINE
        while status == 202 and poll and time.monotonic() < end:
            time.sleep(float(headers.get("Retry-After") or 5))
            status, headers, body = self._arm("GET", poll.split(arm_endpoint(), 1)[-1])
            if isinstance(body, dict) and body.get("status") in ("Succeeded", "Failed", "Canceled"):
                break

    def _alive(self) -> set[str]:
        """Names of the VMs still in this machine's scale set."""
        c = self.compute()
        path = (
            f"/subscriptions/{c['subscriptionId']}/resourceGroups/{c['resourceGroupName']}"
            f"/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}"
        )
        _, _, body = self._arm("GET", path)
        scale_set = self.scale_set_id().lower()
        return {
            str(vm["name"])
            for vm in (body or {}).get("value", [])
            if str(
                ((vm.get("properties") or {}).get("virtualMachineScaleSet") or {}).get("id", "")
            ).lower()
            == scale_set
        }

    # --- the index claim ------------------------------------------------------------------

    def index(self) -> int:
        if self._index is None:
            self._index = self._claim()
        return self._index

    def _container(self) -> Any:
        """The task's container, as the VM's managed identity (never a key)."""
        from azure.identity import ManagedIdentityCredential
        from azure.storage.blob import ContainerClient

        return ContainerClient(
            blob_endpoint(self.remote_env), self.container, credential=ManagedIdentityCredential()
        )

    def _claim(self) -> int:
        end = time.monotonic() + CLAIM_WAIT
        delay = 1.0
        while True:
            try:
                found = self._claim_round()
            except Exception as exc:  # a machine at boot: IMDS, identity, storage may lag
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
        me = self.instance_id()
        container = self._container()
        task = json.loads(container.download_blob(key(self.prefix, TASK_FILE)).readall())
        claims = self._claims(container)
        for index, (claim, _) in claims.items():
            if claim.get("instance") == me:
                return index
        alive: set[str] | None = None
        for index in range(int(task["parallelism"])):
            found = claims.get(index)
            if found is None:
                condition: dict[str, Any] = {"match_condition": _match("IfMissing")}
            else:
                claim, etag = found
                if claim.get("done"):
                    continue
                if alive is None:
                    alive = self._alive()
                if claim.get("instance") in alive:
                    continue
                condition = {"etag": etag, "match_condition": _match("IfNotModified")}
            if self._write_claim(index, me, done=False, condition=condition):
                log.info("claimed index %d", index)
                return index
        return None

    def _claims(self, container: Any) -> dict[int, tuple[dict[str, Any], str]]:
        prefix = key(self.prefix, CLAIMS) + "/"
        out: dict[int, tuple[dict[str, Any], str]] = {}
        for item in container.list_blobs(name_starts_with=prefix):
            name = str(item.name)[len(prefix) :]
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            try:
                blob = container.download_blob(item.name)
                body = json.loads(blob.readall())
                etag = str(blob.properties.etag)
            except Exception as exc:  # deleted meanwhile: the next round sees it
                log.debug("claim %s: %s", name, exc)
                continue
            out[int(name[:-5])] = (body, etag)
        return out

    def _write_claim(self, index: int, me: str, *, done: bool, condition: dict[str, Any]) -> bool:
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        body = json.dumps({"instance": me, "time": time.time(), "done": done}).encode()
        try:
            self._container().upload_blob(
                key(self.prefix, CLAIMS, f"{index}.json"), body, overwrite=True, **condition
            )
        except (ResourceExistsError, ResourceModifiedError):
            return False  # another machine won this index
        return True


def _match(name: str) -> Any:
    """If-None-Match: * (IfMissing) or If-Match: <etag> (IfNotModified)."""
    from azure.core import MatchConditions

    return getattr(MatchConditions, name)
