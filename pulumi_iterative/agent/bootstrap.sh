#!/bin/sh
# pulumi-iterative machine bootstrap, agent {version}, task {task_id}.
# This is the one thing that runs on the machine: it makes the agent available,
# then hands over. Everything else (script, environment, secrets) the agent reads
# from the task's private bucket with the machine's own identity.
set -eu
export PULUMI_ITERATIVE_BOOTSTRAP=1
{install}
exec "$AGENT_PYTHON" -m pulumi_iterative.agent --config '{config}'
