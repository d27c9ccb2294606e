"""The API wrapper: errors translated once by status and reason, transient ones
retried with a deadline, the cluster and namespace from the kubeconfig."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pulumi_iterative.clouds.k8s import api
from pulumi_iterative.clouds.k8s.api import K8sError, Kube, Target, call
from pulumi_iterative.errors import NotFound
from tests.k8s.fake import FakeCluster


def _cm(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


def test_not_found_conflict_and_invalid_are_told_apart(kube: Kube) -> None:
    with pytest.raises(NotFound):
        call(kube.core.read_namespaced_config_map, "absent", kube.namespace)
    call(kube.core.create_namespaced_config_map, kube.namespace, _cm("a"))
    with pytest.raises(K8sError) as twice:
        call(kube.core.create_namespaced_config_map, kube.namespace, _cm("a"))
    assert (twice.value.reason, twice.value.status) == ("AlreadyExists", 409)
    with pytest.raises(K8sError) as invalid:
        call(kube.core.create_namespaced_config_map, kube.namespace, _cm("Not_A_Name"))
    assert invalid.value.reason == "Invalid" and "metadata.name" in str(invalid.value)


def test_transient_errors_are_retried_until_they_pass(cluster: FakeCluster, kube: Kube) -> None:
    cluster.api.fail("create", "configmaps", 503, times=2)
    call(kube.core.create_namespaced_config_map, kube.namespace, _cm("a"))
    assert [e.code for e in cluster.api.requests(verb="create")] == [503, 503, 201]


def test_a_persistent_transient_error_ends_at_the_deadline(
    cluster: FakeCluster, kube: Kube
) -> None:
    cluster.api.fail("create", "configmaps", 500, times=100)
    with pytest.raises(K8sError, match="still failing after"):
        call(kube.core.create_namespaced_config_map, kube.namespace, _cm("a"), deadline=1.0)


def test_forbidden_is_not_retried(cluster: FakeCluster, tmp_path: Path) -> None:
    path = cluster.user_kubeconfig(tmp_path / "alice", "alice")
    alice = Kube(Target(kubeconfig=str(path)))
    with pytest.raises(K8sError) as denied:
        call(alice.core.list_namespaced_pod, alice.namespace)
    assert denied.value.reason == "Forbidden"
    assert len(cluster.api.requests(user="alice")) == 1


def test_the_namespace_comes_from_the_target_then_the_context(cluster: FakeCluster) -> None:
    kubeconfig = str(cluster.kubeconfig)
    assert api.namespace_of(Target(kubeconfig=kubeconfig)) == "work"
    assert api.namespace_of(Target(kubeconfig=kubeconfig, namespace="ml")) == "ml"
    with pytest.raises(K8sError, match="region: no context 'prod'"):
        api.namespace_of(Target(kubeconfig=kubeconfig, context="prod"))


def test_the_current_context_is_pinned_by_name(cluster: FakeCluster) -> None:
    assert api.context_of(Target(kubeconfig=str(cluster.kubeconfig))) == "fake"
    assert api.context_of(Target(kubeconfig=str(cluster.kubeconfig), context="x")) == "x"


def test_a_missing_kubeconfig_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(K8sError, match="KUBECONFIG"):
        api.api_client(Target(kubeconfig=str(tmp_path / "absent")))


def test_a_server_that_never_answers_ends_in_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A connection the network dropped silently: each request times out, is retried
    as transient, and the call ends at its deadline with the cause, whether the call
    is an API method or a lambda around one (as `resources.ensure` passes)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) and never answers
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "silent",
                        "cluster": {"server": f"http://127.0.0.1:{silent.getsockname()[1]}"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}],
                "current-context": "silent",
            }
        )
    )
    try:
        kube = Kube(Target(kubeconfig=str(kubeconfig)))
        monkeypatch.setattr(api, "REQUEST_TIMEOUT", (1.0, 0.2))
        with pytest.raises(K8sError, match=r"list_namespaced_pod.*(?i:timeout|timed out)"):
            call(kube.core.list_namespaced_pod, "work", deadline=1.0)
        with pytest.raises(K8sError, match=r"(?i:timeout|timed out)"):
            call(lambda: kube.core.read_namespaced_pod("p", "work"), deadline=1.0)
    finally:
        silent.close()
