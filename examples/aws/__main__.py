"""The example on AWS: `pulumi up` starts a spot machine that trains, `pulumi destroy`
brings `results/` home and removes everything the task made in your account.

Needs AWS credentials in your environment (a profile, SSO or keys) and the
package with its AWS extra in the Python that runs this program:
`pip install 'pulumi-iterative[aws]'`. See the README's AWS section for the IAM
permissions. Change machine to "m+t4" and image to "nvidia" for a T4 GPU.
"""

import os

import pulumi

from pulumi_iterative import IterativeTask, Storage

here = os.path.dirname(os.path.abspath(__file__))

task = IterativeTask(
    "train",
    cloud="aws",
    region="us-east",  # or once per stack: pulumi config set iterative:region eu-west
    machine="s",  # t3.medium (t3a.medium as the fallback): a few cents an hour
    image="ubuntu",  # the newest Ubuntu 24.04 LTS image from Canonical
    spot=0,  # spot at the market price; -1 for on-demand; 0.05 caps the hourly price
    disk_size=30,
    timeout="1h",  # the group is scaled to zero at this deadline whatever happens
    environment={"EPOCHS": "12", "SECONDS_PER_EPOCH": "5"},
    script=(
        "#!/bin/sh\nset -e\n"
        "python train.py --epochs $EPOCHS --seconds-per-epoch $SECONDS_PER_EPOCH\n"
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
