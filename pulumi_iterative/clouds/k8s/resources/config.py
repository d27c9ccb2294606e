"""The task's ConfigMap (bootstrap and the task definition without secrets) and its
Secret (secret_environment, and storage credentials), named from the task id."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from ..api import Kube, call, gone
from ..names import Names
from . import STRICT, ensure


def config_map_body(
    names: Names, files: Mapping[str, str], binary: Mapping[str, bytes] | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.config_map, "labels": names.labels("task")},
        "data": dict(files),
        "immutable": True,  # what a machine boots from never changes under it
    }
    if binary:
        body["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    return body


def secret_body(names: Names, values: Mapping[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": names.secret, "labels": names.labels("task")},
        "type": "Opaque",
        "stringData": dict(values),  # the API server stores it base64 in `data`
        "immutable": True,
    }


def create_config_map(
    kube: Kube, names: Names, files: Mapping[str, str], binary: Mapping[str, bytes] | None = None
) -> None:
    ensure(
        names,
        f"configmap {names.config_map}",
        lambda: kube.core.read_namespaced_config_map(names.config_map, kube.namespace),
        lambda: kube.core.create_namespaced_config_map(
            kube.namespace, config_map_body(names, files, binary), **STRICT
        ),
    )


def delete_config_map(kube: Kube, names: Names) -> None:
    gone(kube.core.delete_namespaced_config_map, names.config_map, kube.namespace)


def create_secret(kube: Kube, names: Names, values: Mapping[str, str]) -> None:
    ensure(
        names,
        f"secret {names.secret}",
        lambda: kube.core.read_namespaced_secret(names.secret, kube.namespace),
        lambda: kube.core.create_namespaced_secret(
            kube.namespace, secret_body(names, values), **STRICT
        ),
    )


def delete_secret(kube: Kube, names: Names) -> None:
    gone(kube.core.delete_namespaced_secret, names.secret, kube.namespace)


def read_config_map(kube: Kube, names: Names) -> dict[str, str]:
    found = call(kube.core.read_namespaced_config_map, names.config_map, kube.namespace)
    return dict(found.data or {})
