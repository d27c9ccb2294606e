"""Kubernetes tests: a fake cluster per test (API server on 127.0.0.1, controllers,
pods as local processes), driven through the official `kubernetes` client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from pulumi_iterative.clouds.k8s.api import Kube, Target
from tests.k8s.fake import FakeCluster, default_host_env


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with FakeCluster(tmp_path, host_env=default_host_env()) as made:
        yield made
        assert not made.errors, f"the fake's controllers failed: {made.errors}"
    assert not made.live_processes()


@pytest.fixture
def kube(cluster: FakeCluster) -> Kube:
    """The backend's own view of the fake cluster: its kubeconfig, current context."""
    return Kube(Target(kubeconfig=str(cluster.kubeconfig)))
