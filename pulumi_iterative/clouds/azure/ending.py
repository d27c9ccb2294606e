"""How an Azure VM stores its failure and ends itself, before (or without) the agent.

The bootstrap's `boot_upload` and `boot_end` (see agent/bootstrap.py), as shell with
curl only (no Python, no SDK: the install that failed may be Python's own):

- `boot_upload <file> <path>`: a block blob PUT into the task's container with a
  token of the VM's managed identity from IMDS (Azure AD, never a key or SAS);
- `boot_end`: the VM removes itself from its scale set (delete instances, with the
  same token for Resource Manager and the scale set's role of its identity), so the
  capacity drops, no replacement comes and Azure deletes the VM: billing stops.
  A stopped VM would still be billed (only deallocated or deleted ones are not), so
  leaving is retried for about a minute; then the VM asks its scale set to deallocate
  it (the same role, scoped to the scale set: Azure RBAC cannot scope to the VM), which
  stops the compute billing while the capacity stays, so no replacement comes; the
  deadline backstop's capacity 0 deletes it. Only if that is refused too does it power
  off all the same (billed until the backstop), also when Azure has not deallocated
  it DEALLOCATE_WAIT seconds after accepting.

The emulator endpoints (IMDS and Resource Manager on loopback, as machine.py honours
them) and SSL_CERT_FILE (an emulator's certificate, as azure-storage-blob honours
it) come from the environment that runs the bootstrap; nothing stored in Azure sets
them. No SDK here.
"""

from __future__ import annotations

import shlex

from ...storage import Remote
from ...task import TaskRef
from .machine import COMPUTE_API, IMDS, INSTANCE_API, TOKEN_API
from .names import blob_endpoint, key, split_root

BLOB_API = "2023-11-03"  # x-ms-version: Azure AD bearer tokens need 2017-11-09 or later
LEAVE_TRIES_UNTIL = 32  # seconds of the last back-off: about a minute of tries in all
DEALLOCATE_TRIES = 3  # a deallocate refused this often: power off instead
DEALLOCATE_WAIT = 300  # seconds Azure may take to deallocate before the VM powers off


def machine_ending(ref: TaskRef, scale_set_id: str) -> str:
    remote = Remote.from_dict(ref.remote)
    container, prefix = split_root(remote.root)
    blobs = shlex.quote(f"{blob_endpoint(dict(remote.env)).rstrip('/')}/{key(container, prefix)}")
    scale_set = shlex.quote(scale_set_id)
    return f"""\
az_imds() {{  # <path and query>: the Instance Metadata Service (loopback in simulators)
  imds="${{PULUMI_ITERATIVE_IMDS_ENDPOINT:-{IMDS}}}"
  curl -sf -m 5 -H 'Metadata: true' "${{imds%/}}$1"
}}
az_token() {{  # <resource>: an access token of this VM's managed identity
  az_imds "/metadata/identity/oauth2/token?api-version={TOKEN_API}&resource=$1" |
    sed -n 's/.*"access_token" *: *"\\([^"]*\\)".*/\\1/p'
}}
AZ_CA="${{SSL_CERT_FILE:-}}"
boot_upload() {{
  tok="$(az_token https://storage.azure.com/)" && [ -n "$tok" ] || return 1
  curl -sf -m 30 ${{AZ_CA:+--cacert "$AZ_CA"}} -H "Authorization: Bearer $tok" \\
    -H 'x-ms-version: {BLOB_API}' -H 'x-ms-blob-type: BlockBlob' \\
    -T "$1" {blobs}"/$2" >/dev/null
}}
az_scale_set() {{  # <action>: POST it on this task's scale set, for this VM only
  arm=https://management.azure.com
  case "${{PULUMI_ITERATIVE_ARM_ENDPOINT:-}}" in
    http://127.0.0.1:*|http://localhost:*) arm="${{PULUMI_ITERATIVE_ARM_ENDPOINT%/}}" ;;
  esac
  vm="$(az_imds '/metadata/instance/compute/name?api-version={INSTANCE_API}&format=text')" &&
    [ -n "$vm" ] && tok="$(az_token https://management.azure.com/)" && [ -n "$tok" ] &&
    curl -sf -m 30 -X POST -H "Authorization: Bearer $tok" \\
      -H 'Content-Type: application/json' --data "{{\\"instanceIds\\": [\\"$vm\\"]}}" \\
      "$arm"{scale_set}"/$1?api-version={COMPUTE_API}" >/dev/null
}}
boot_end() {{
  delay=2
  until az_scale_set delete; do
    if [ "$delay" -gt {LEAVE_TRIES_UNTIL} ]; then
      echo "could not leave the scale set: deallocating this VM (no compute billed)"
      tries=0
      until az_scale_set deallocate; do
        tries=$((tries + 1))
        if [ "$tries" -ge {DEALLOCATE_TRIES} ]; then
          echo "could not deallocate: powering off (billed until the deadline backstop)"
          shutdown -h now || poweroff
          return
        fi
        sleep 5
      done
      sleep {DEALLOCATE_WAIT}  # Azure shuts this VM down and deallocates it meanwhile
      echo "not deallocated after {DEALLOCATE_WAIT}s: powering off"
      break
    fi
    echo "leaving the scale set failed; again in ${{delay}}s"
    sleep "$delay"; delay=$((delay * 2))
  done
  shutdown -h now || poweroff
}}"""
