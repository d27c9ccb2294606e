"""The example on Azure: `pulumi up` starts a Spot VM that trains, `pulumi destroy`
brings `results/` home and removes everything the task made in your subscription.

Needs `az login` (or another Azure AD login azure-identity finds), AZURE_SUBSCRIPTION_ID
in the environment, and the package with its Azure extra in the Python that runs this
program: `pip install 'pulumi-iterative[azure]'`. See the README's Azure section for
the role your login needs. Change machine to "m+t4" and image to "nvidia" for a T4 GPU.
"""

import os

import pulumi

from pulumi_iterative import IterativeTask, Storage

here = os.path.dirname(os.path.abspath(__file__))

task = IterativeTask(
    "train",
    cloud="azure",
    region="us-east",  # eastus; or once per stack: pulumi config set iterative:region eu-west
    machine="s",  # Standard_D2as_v5 (Standard_D2s_v5 as the fallback): cents an hour as Spot
    image="ubuntu",  # Canonical's Ubuntu 24.04 LTS
    spot=0,  # Spot up to the on-demand price; -1 for on-demand; 0.05 caps the hourly price
    disk_size=30,
    timeout="1h",  # autoscale sets the scale set to zero at this deadline whatever happens
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
