"""The local example as a Pulumi program: `pulumi up` trains, `pulumi destroy` brings
results home."""

import os

import pulumi

from pulumi_iterative import IterativeTask, Storage

here = os.path.dirname(os.path.abspath(__file__))

task = IterativeTask(
    "train",
    cloud="local",  # or once per stack: pulumi config set iterative:cloud local
    spot=0,  # rehearse preemption ...
    preempt_interval=6,  # ... every 6 seconds
    preempt_notice=2,
    timeout=600,
    script="#!/bin/sh\npython train.py --epochs 12\n",
    storage=Storage(workdir=here, output="results", exclude=["__pycache__/", "*.yaml"]),
)

pulumi.export("task_id", task.task_id)
pulumi.export("status", task.status)
pulumi.export("events", task.events)
