#!/bin/sh
# pulumi-iterative machine bootstrap, agent 0.1.0, task train-abcdefgh12.
# This is the one thing that runs on the machine: it makes the agent available,
# then hands over. Everything else (script, environment, secrets) the agent reads
# from the task's private bucket with the machine's own identity.
set -eu
export PULUMI_ITERATIVE_BOOTSTRAP=1
# preinstalled agent: no OS-level install
AGENT_PYTHON=/opt/py/bin/python3
export PATH=/opt/py/bin:"$PATH"
exec "$AGENT_PYTHON" -m pulumi_iterative.agent --config 'eyJjbG91ZCI6ICJsb2NhbCIsICJyZW1vdGUiOiB7ImVudiI6IHt9LCAicm9vdCI6ICIvdmFyL2J1Y2tldHMvdHJhaW4tYWJjZGVmZ2gxMiJ9LCAic2NoZW1hIjogMSwgInRhc2tfaWQiOiAidHJhaW4tYWJjZGVmZ2gxMiIsICJ2ZXJzaW9uIjogIjAuMS4wIn0='
