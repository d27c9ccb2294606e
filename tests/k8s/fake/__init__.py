"""A fake Kubernetes cluster on loopback, behind the official client over real HTTP.

    with FakeCluster(tmp_path) as cluster:
        cluster.kubeconfig        # a kubeconfig file: context "fake", namespace "work"
        cluster.client()          # a kubernetes.client.ApiClient for it (admin)
        cluster.reclaim_node("spot-1")

See store.py (objects, validation), server.py (HTTP, RBAC, audit, faults) and
cluster.py (scheduler, kubelet, Job controller, garbage collector).
"""

from __future__ import annotations

import base64
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml

from .cluster import DEFAULT_NODES, Cluster, NodeSpec
from .server import AuditEntry, Fault
from .store import BY_PLURAL, ApiError

__all__ = [
    "BY_PLURAL",
    "DEFAULT_NODES",
    "ApiError",
    "AuditEntry",
    "FakeCluster",
    "Fault",
    "NodeSpec",
]

NAMESPACE = "work"


class FakeCluster(Cluster):
    def __init__(
        self,
        root: Path,
        *,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        host_env: dict[str, str] | None = None,
        namespace: str = NAMESPACE,
        tls: bool = False,
    ) -> None:
        super().__init__(root / "cluster", nodes=nodes, host_env=host_env)
        self.namespace = namespace
        self.store.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": namespace}})
        self.ca_cert: Path | None = None  # with tls: the cluster's CA (PEM)
        if tls:
            from tests.tls import self_signed

            self.ca_cert, key = self_signed(root / "tls", "fake-cluster-ca")
            self.api.serve_tls(self.ca_cert, key)
        self.kubeconfig = root / "kubeconfig"
        self.write_kubeconfig(self.kubeconfig, self.admin_token)

    def __enter__(self) -> FakeCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(
        self, path: Path, token: str, *, context: str = "fake", server: str = ""
    ) -> Path:
        """A kubeconfig with one context for this cluster (`server`: another URL for it,
        as a teammate's kubeconfig may have)."""
        cluster: dict[str, str] = {"server": server or self.api.url}
        if self.ca_cert is not None:
            cluster["certificate-authority-data"] = base64.b64encode(
                self.ca_cert.read_bytes()
            ).decode()
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": cluster}],
                    "users": [{"name": "fake-user", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": context,
                            "context": {
                                "cluster": "fake",
                                "user": "fake-user",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                    "current-context": context,
                }
            )
        )
        path.chmod(0o600)
        return path

    def user_kubeconfig(self, path: Path, user: str) -> Path:
        """A kubeconfig for a non-admin user (allowed only what RoleBindings grant it)."""
        token = secrets.token_hex(16)
        self.api.add_user(token, user)
        return self.write_kubeconfig(path, token)

    def client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig), context="fake")

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list(BY_PLURAL[plural], namespace)


def default_host_env() -> dict[str, str]:
    """What the fake's "images" provide: the host's PATH with this Python's scripts first."""
    import os
    import sysconfig

    scripts = sysconfig.get_path("scripts")
    return {
        "PATH": ":".join((scripts, str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
        "LANG": "C.UTF-8",
    }


def agent_host_env() -> dict[str, str]:
    """default_host_env, and the pods run this checkout's agent with this Python (the
    documented simulator-only install skip) instead of installing one."""
    import os

    from pulumi_iterative.agent.bootstrap import SKIP_INSTALL_ENV

    return {
        **default_host_env(),
        SKIP_INSTALL_ENV: sys.executable,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
