"""Which cluster a task uses, and that it keeps using it: the cluster is pinned at create
by its server URL and CA, so refresh and destroy work through any context that points
at it, whatever its name; inside a pod with no kubeconfig, the pod's own service account
(token and CA from its folder, the API server from KUBERNETES_SERVICE_HOST/PORT). The
fake serves TLS here, as a cluster does, so the CA is really checked."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from pulumi_iterative import lifecycle
from pulumi_iterative.clouds.k8s import api
from pulumi_iterative.clouds.k8s.api import K8sError
from pulumi_iterative.clouds.k8s.permissions import caller_role
from pulumi_iterative.spec import parse_spec
from pulumi_iterative.status import State
from tests.k8s.fake import FakeCluster, agent_host_env
from tests.k8s.helpers import eventually, leftovers

SCRIPT = "#!/bin/sh\nmkdir -p out\necho done > out/x\n"


@pytest.fixture
def tls_cluster(tmp_path: Path, iterative_home: Path) -> Iterator[FakeCluster]:
    host_env = agent_host_env()
    with FakeCluster(tmp_path / "cluster", host_env=host_env, tls=True) as cluster:
        yield cluster
        assert not cluster.errors, cluster.errors


def _spec(tmp_path: Path, **args: object) -> object:
    workdir = tmp_path / "project"
    workdir.mkdir(exist_ok=True)
    return parse_spec(
        {
            "cloud": "k8s",
            "machine": "s",
            "script": SCRIPT,
            "storage": {"workdir": str(workdir), "output": "out"},
            **args,
        }
    )


def _ca_sha256(cluster: FakeCluster) -> str:
    assert cluster.ca_cert is not None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cluster.ca_cert.read_text())).hexdigest()


def _kubeconfig(
    path: Path, current: str, contexts: dict[str, tuple[str, bytes | Path]], token: str
) -> Path:
    """A kubeconfig with these contexts: name -> (server, CA: PEM, a file, or b"")."""
    import base64

    clusters, entries = [], []
    for name, (server, ca) in contexts.items():
        cluster = {"server": server}
        if isinstance(ca, Path):
            cluster["certificate-authority"] = str(ca)
        elif ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        clusters.append({"name": f"c-{name}", "cluster": cluster})
        entries.append({"name": name, "context": {"cluster": f"c-{name}", "user": "u"}})
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": clusters,
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": entries,
                "current-context": current,
            }
        )
    )
    return path


def test_teammates_reach_the_task_through_their_own_contexts(
    tls_cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = tls_cluster
    assert cluster.ca_cert is not None
    ca, url = cluster.ca_cert.read_bytes(), cluster.api.url
    port = url.rsplit(":", 1)[1]
    token = cluster.admin_token
    alice = cluster.write_kubeconfig(tmp_path / "alice", token, context="prod-east")
    monkeypatch.setenv("KUBECONFIG", str(alice))
    ref = lifecycle.create(_spec(tmp_path, namespace="work"))
    assert (ref.extra["context"], ref.extra["server"]) == ("prod-east", url)
    assert ref.extra["ca"] == _ca_sha256(cluster) and ref.extra["namespace"] == "work"

    # Bob names the cluster "team" and reaches it by another URL: the same CA (a file).
    bob = _kubeconfig(
        tmp_path / "bob", "team", {"team": (f"https://localhost:{port}", cluster.ca_cert)}, token
    )
    # Carol's "prod-east" is another cluster; her context for this one is "mine".
    carol = _kubeconfig(
        tmp_path / "carol",
        "prod-east",
        {"prod-east": ("https://127.0.0.1:1", b""), "mine": (url, ca)},
        token,
    )
    monkeypatch.setenv("KUBECONFIG", str(bob))
    status = eventually(lambda: (s := lifecycle.read(ref)).done and s, "the task", timeout=120)
    assert status.state == State.SUCCEEDED, status

    # Dave has no context for the cluster: a clear error, not another cluster's answer.
    dave = _kubeconfig(tmp_path / "dave", "x", {"x": ("https://127.0.0.1:1", b"")}, token)
    monkeypatch.setenv("KUBECONFIG", str(dave))
    with pytest.raises(K8sError, match=f"cluster at {url}, and no context"):
        lifecycle.read(ref)

    monkeypatch.setenv("KUBECONFIG", str(carol))
    assert lifecycle.delete(ref) == 1
    assert (tmp_path / "project" / "out" / "x").read_text() == "done\n"
    assert leftovers(cluster, ref.task_id) == []


def test_a_task_made_from_inside_a_pod_uses_its_service_account(
    tls_cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No kubeconfig, KUBERNETES_SERVICE_HOST set: the whole task runs as the pod's
    service account (bound to the caller's Role only), in the pod's namespace."""
    cluster = tls_cluster
    assert cluster.ca_cert is not None
    rbac = client.RbacAuthorizationV1Api(cluster.client())
    rbac.create_namespaced_role("work", caller_role("work"))
    rbac.create_namespaced_role_binding(
        "work",
        {
            "metadata": {"name": "runner-caller"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pulumi-iterative-caller",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "work"}],
        },
    )
    token = "sa-" + os.urandom(8).hex()
    account = "system:serviceaccount:work:runner"
    cluster.api.add_user(token, account)
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes(cluster.ca_cert.read_bytes())
    (folder / "namespace").write_text("work")
    monkeypatch.setattr(api, "SERVICE_ACCOUNT_DIR", folder)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config
    host, port = cluster.api.url.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)

    ref = lifecycle.create(_spec(tmp_path))
    assert ref.extra["server"] == cluster.api.url and ref.extra["ca"] == _ca_sha256(cluster)
    assert ref.extra["namespace"] == "work"
    status = eventually(lambda: (s := lifecycle.read(ref)).done and s, "the task", timeout=120)
    assert status.state == State.SUCCEEDED, status
    assert lifecycle.delete(ref) == 1
    assert leftovers(cluster, ref.task_id) == []
    assert {e.user for e in cluster.api.requests(resource="jobs")} == {account}
    assert [e for e in cluster.api.requests(user=account) if e.code == 403] == []
