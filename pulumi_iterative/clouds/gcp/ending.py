"""How a GCE machine stores its failure and ends itself, before (or without) the agent.

The bootstrap (agent/bootstrap.sh) calls `boot_upload` and `boot_end` when anything
fails on the machine: the install, the wheel's fetch, the agent, leaving the group.
Here they are plain curl, since nothing of Python may be there yet:

- the token is the machine's service account's, from the metadata server (never a
  token or key in the startup script);
- `boot_upload` is one media upload to the GCS JSON API of the task's bucket, at the
  endpoint the task's remote names (the BootConfig's: rclone on the machine uses the
  same one), so an emulator set at create is honoured and nothing of the caller's
  environment is read on the machine;
- `boot_end` leaves the managed instance group as the agent's `leave_group` does
  (`deleteInstances` on its own instance, which lowers the target size, so no
  replacement comes), retried about a minute on transient answers only (no answer,
  408, 429, 5xx); a refusal (403, say) goes straight on. Then the machine powers off:
  a stopped instance bills no vCPU or memory, and a spot one is deleted when GCE
  takes it back (`instanceTerminationAction: DELETE`).

The metadata host and the compute endpoint are read at run time as the agent reads
them (GCE_METADATA_HOST, PULUMI_ITERATIVE_GCP_ENDPOINT: a simulator sets them, GCE
does not); the project, region and group are the task's, fixed at create.
"""

from __future__ import annotations

import shlex
from urllib.parse import quote

from ...storage import Remote
from ...task import TaskRef
from .machine import HOST_ENV, METADATA_HOST
from .names import ENDPOINT_ENV, Names, storage_api

COMPUTE_API = "https://compute.googleapis.com"
LEAVE_RETRY_CAP = 32  # seconds: the last back-off step (2+4+...+32: about a minute)


def machine_ending(ref: TaskRef, bucket: str, prefix: str, project: str) -> str:
    """Shell defining boot_upload and boot_end for this task's machines (see the module)."""
    q = shlex.quote
    names = Names(ref.task_id)
    objects = f"{storage_api(dict(Remote.from_dict(ref.remote).env))}/upload/storage/v1/b/"
    objects += f"{quote(bucket, safe='')}/o?uploadType=media&name="
    objects += quote(prefix.strip("/") + "/", safe="") if prefix.strip("/") else ""
    group = (
        f"/compute/v1/projects/{quote(project, safe='')}/regions/{quote(ref.region, safe='')}"
        f"/instanceGroupManagers/{names.group}/deleteInstances"
    )
    return f"""\
gcp_md() {{  # <path>: a value from the metadata server
  curl -sf -m 5 --retry 2 -H 'Metadata-Flavor: Google' \\
    "http://${{{HOST_ENV}:-{METADATA_HOST}}}/computeMetadata/v1/$1"
}}
gcp_token() {{  # TOKEN: the machine's service account's access token
  TOKEN="$(gcp_md instance/service-accounts/default/token |
    sed -n 's/.*"access_token" *: *"\\([^"]*\\)".*/\\1/p')"
  [ -n "$TOKEN" ]
}}
boot_upload() {{
  gcp_token || return 1
  curl -sSf -m 60 --retry 3 --retry-connrefused --oauth2-bearer "$TOKEN" \\
    -H 'Content-Type: application/octet-stream' --data-binary @"$1" \\
    {q(objects)}"$(printf '%s' "$2" | sed 's|/|%2F|g')" >/dev/null
}}
gcp_leave() {{  # 0: left; 1: refused for good; 2: not now (try again)
  gcp_token || return 2
  name="$(gcp_md instance/name)" && zone="$(gcp_md instance/zone)" || return 2
  zone="${{zone##*/}}"
  body='{{"instances": ["zones/'"$zone/instances/$name"'"],'
  body="$body"' "skipInstancesOnValidationError": true}}'
  answer="$(curl -s -m 30 -o "$BOOT_DIR/leave.json" -w '%{{http_code}}' -X POST \\
    --oauth2-bearer "$TOKEN" -H 'Content-Type: application/json' --data "$body" \\
    "${{{ENDPOINT_ENV}:-{COMPUTE_API}}}"{q(group)})"
  case "$answer" in
    2??) return 0 ;;
    000|408|429|5??) echo "leaving group {names.group}: HTTP $answer"; return 2 ;;
  esac
  echo "leaving group {names.group} refused: HTTP $answer $(head -c 300 "$BOOT_DIR/leave.json")"
  return 1
}}
boot_end() {{
  delay=2
  while :; do
    gcp_leave; left=$?
    [ "$left" = 2 ] || break  # left, or refused for good
    [ "$delay" -gt {LEAVE_RETRY_CAP} ] && break  # about a minute: power off all the same
    echo "again in ${{delay}}s"
    sleep "$delay"; delay=$((delay * 2))
  done
  shutdown -h now || poweroff
}}"""
