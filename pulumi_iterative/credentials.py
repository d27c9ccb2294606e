"""Well-known cloud credential variables, refused in plain `environment` (every cloud).

A plain `environment` value is stored in Pulumi state, in outputs and in the task
definition: a key or token there leaks to everyone who can read the stack. Machines
get their cloud access from the task's own identity (an instance role, service
account, managed identity or Kubernetes service account), and a secret the script
itself needs belongs in `secret_environment`, which stays secret in state.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from .errors import FieldError

CREDENTIAL_VARIABLES = frozenset(
    {
        # AWS
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        # Google Cloud
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CREDENTIALS",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "GOOGLE_CLOUD_KEYFILE_JSON",
        "GCLOUD_KEYFILE_JSON",
        "CLOUDSDK_AUTH_ACCESS_TOKEN",
        # Azure
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_PASSWORD",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_SAS_TOKEN",
        "ARM_CLIENT_SECRET",
        "ARM_ACCESS_KEY",
        "ARM_SAS_TOKEN",
        # Kubernetes
        "KUBECONFIG",
        "KUBE_TOKEN",
        "K8S_AUTH_API_KEY",
        "K8S_AUTH_PASSWORD",
    }
)

FIX = (
    "plain environment values are stored in Pulumi state, outputs and the task "
    "definition. Machines reach the cloud with the task's own identity (its role or "
    "service account; choose one with permission_set); put a secret the script itself "
    "needs in secret_environment instead"
)


def plain_credential_errors(environment: Any) -> list[FieldError]:
    """Errors for credential variables named, or matched by a glob, in `environment`."""
    if not isinstance(environment, Mapping):
        return []  # the parser reports the wrong type
    errors = []
    for name in sorted(str(k) for k in environment):
        if name in CREDENTIAL_VARIABLES:
            errors.append(FieldError(f"environment.{name}", f"is a cloud credential: {FIX}"))
            continue
        matched = sorted(fnmatch.filter(CREDENTIAL_VARIABLES, name))
        if matched and name not in matched:
            errors.append(
                FieldError(
                    f"environment.{name}",
                    f"would copy cloud credentials ({', '.join(matched)}): name the "
                    f"variables you need instead of a glob; {FIX}",
                )
            )
    return errors
