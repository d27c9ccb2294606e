"""The example on Kubernetes: `pulumi up` starts an Indexed Job on the cluster of your
kubeconfig that trains, `pulumi destroy` brings `results/` home and removes everything
the task made in the namespace.

Needs a kubeconfig (KUBECONFIG or ~/.kube/config; the context's namespace is used
unless `namespace=` or `pulumi config set iterative:namespace ...` names one) and
the package with its Kubernetes extra in the Python that runs this program:
`pip install 'pulumi-iterative[k8s]'`. See the README's Kubernetes section for the
RBAC role your user needs. Change machine to "m+t4" and image to "nvidia" for a T4 GPU
on a node labelled by NVIDIA's GPU feature discovery.
"""

import os

import pulumi

from pulumi_iterative import IterativeTask, Storage

here = os.path.dirname(os.path.abspath(__file__))

task = IterativeTask(
    "train",
    cloud="k8s",
    region="local",  # the kubeconfig's current context; or a context name
    machine="s",  # requests = limits of 1 CPU and 2 GiB
    image="python:3.12-slim",  # any image with /bin/sh; python3 comes with this one
    spot=0,  # only the spot pools (Karpenter, GKE, AKS); -1 keeps off them
    disk_size=5,  # GiB of the task's volume
    timeout="1h",  # the Job's activeDeadlineSeconds stops it whatever happens
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
)

pulumi.export("task_id", task.task_id)
pulumi.export("status", task.status)
pulumi.export("events", task.events)
pulumi.export("logs", task.logs)
