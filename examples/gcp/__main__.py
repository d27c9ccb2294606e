"""The example on GCP: `pulumi up` starts a spot machine that trains, `pulumi destroy`
brings `results/` home and removes everything the task made in your project.

Needs application default credentials (`gcloud auth application-default login`), the
project in GOOGLE_CLOUD_PROJECT, and the package with its GCP extra in the Python that
runs this program: `pip install 'pulumi-iterative[gcp]'`. See the README's GCP section
for the IAM permissions. Change machine to "m+t4" and image to "nvidia" for a T4 GPU.
"""

import os

import pulumi

from pulumi_iterative import IterativeTask, Storage

here = os.path.dirname(os.path.abspath(__file__))

task = IterativeTask(
    "train",
    cloud="gcp",
    region="us-east",  # us-east1, all its zones; or a zone such as "us-east1-c"
    machine="s",  # e2-medium: a few cents an hour
    image="ubuntu",  # the newest image of the Ubuntu 24.04 LTS family
    spot=0,  # a Spot VM; -1 for on-demand
    disk_size=30,
    timeout="1h",  # GCE deletes the machines at this deadline whatever happens
    environment={"EPOCHS": "12", "SECONDS_PER_EPOCH": "5"},
    script=(
        "#!/bin/sh\nset -e\n"
        "python3 train.py --epochs $EPOCHS --seconds-per-epoch $SECONDS_PER_EPOCH\n"
    ),
    storage=Storage(
        workdir=here,
        output="results",
        exclude=["__pycache__/", "Pulumi*.yaml", "venv/", ".venv/"],
    ),
    tags={"project": "iterative-example"},
)

pulumi.export("task_id", task.task_id)
pulumi.export("status", task.status)
pulumi.export("events", task.events)
pulumi.export("logs", task.logs)
