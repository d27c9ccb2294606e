"""The fake API server, driven through the official client over HTTP: storage,
selectors, versions, strict decoding by the client's model classes, the API
server's error objects, RBAC, faults and the audit log."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from tests.k8s.fake import FakeCluster
from tests.k8s.helpers import raw

NS = "work"


def _cm(name: str, labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}), data={"k": "v"}
    )


def test_objects_get_uid_version_and_time_and_list_by_selector(cluster: FakeCluster) -> None:
    core = client.CoreV1Api(cluster.client())
    a = core.create_namespaced_config_map(NS, _cm("a", {"app": "x", "tier": "db"}))
    b = core.create_namespaced_config_map(NS, _cm("b", {"app": "y"}))
    core.create_namespaced_config_map(NS, _cm("c"))
    assert a.metadata.uid != b.metadata.uid
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    assert a.metadata.creation_timestamp is not None

    def names(selector: str) -> list[str]:
        return [
            i.metadata.name
            for i in core.list_namespaced_config_map(NS, label_selector=selector).items
        ]

    assert names("app=x") == ["a"]
    assert names("app!=x") == ["b", "c"]
    assert names("app in (x,y)") == ["a", "b"]
    assert names("app notin (x)") == ["b", "c"]
    assert names("tier") == ["a"]
    assert names("!app") == ["c"]
    assert names("app,tier=db") == ["a"]


def test_answers_are_status_objects_like_the_api_servers(cluster: FakeCluster) -> None:
    core = client.CoreV1Api(cluster.client())
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("nope", NS)
    status = json.loads(missing.value.body)
    assert (missing.value.status, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'configmaps "nope" not found'
    core.create_namespaced_config_map(NS, _cm("a"))
    with pytest.raises(client.ApiException) as twice:
        core.create_namespaced_config_map(NS, _cm("a"))
    assert (twice.value.status, json.loads(twice.value.body)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(client.ApiException) as no_ns:
        core.create_namespaced_config_map("absent", _cm("a"))
    assert no_ns.value.status == 404


def test_a_stale_resource_version_is_a_conflict(cluster: FakeCluster) -> None:
    core = client.CoreV1Api(cluster.client())
    first = core.create_namespaced_config_map(NS, _cm("a"))
    first.data = {"k": "2"}
    core.replace_namespaced_config_map("a", NS, first)
    first.data = {"k": "3"}  # still carries the old resourceVersion
    with pytest.raises(client.ApiException) as stale:
        core.replace_namespaced_config_map("a", NS, first)
    assert (stale.value.status, json.loads(stale.value.body)["reason"]) == (409, "Conflict")


def test_unknown_fields_are_refused_when_strict_and_dropped_with_a_warning_otherwise(
    cluster: FakeCluster,
) -> None:
    api = cluster.client()
    body = {"metadata": {"name": "a"}, "data": {"k": "v"}, "dat": {"typo": "1"}}
    path = f"/api/v1/namespaces/{NS}/configmaps"
    code, status, _ = raw(api, "POST", path + "?fieldValidation=Strict", body)
    assert code == 400 and status["reason"] == "BadRequest"
    assert 'strict decoding error: unknown field "dat"' in status["message"]
    code, made, headers = raw(api, "POST", path, body)
    assert code == 201 and "dat" not in made
    assert 'unknown field \\"dat\\"' in json.dumps(headers.get("Warning")) or "dat" in headers.get(
        "Warning", ""
    )
    # nested, and the client's Python names are not wire names
    job = {
        "metadata": {"name": "j"},
        "spec": {"active_deadline_seconds": 5, "template": {"spec": {"containers": []}}},
    }
    code, status, _ = raw(
        api, "POST", f"/apis/batch/v1/namespaces/{NS}/jobs?fieldValidation=Strict", job
    )
    assert code == 400 and 'unknown field "spec.active_deadline_seconds"' in status["message"]


def test_wrong_types_and_missing_required_fields(cluster: FakeCluster) -> None:
    api = cluster.client()
    jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
    code, status, _ = raw(
        api,
        "POST",
        jobs,
        {"metadata": {"name": "j"}, "spec": {"parallelism": "2", "template": template}},
    )
    assert code == 400
    assert (
        "cannot unmarshal string into Go struct field spec.parallelism of type int32"
        in status["message"]
    )
    code, status, _ = raw(
        api,
        "POST",
        jobs,
        {
            "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
        },
    )
    assert code == 422 and status["reason"] == "Invalid"
    assert {
        "reason": "FieldValueRequired",
        "field": "spec.template.spec.containers[0].name",
        "message": "Required value",
    } in status["details"]["causes"]


def test_job_rules_of_the_api_server(cluster: FakeCluster) -> None:
    api = cluster.client()
    jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
    spec = {
        "completionMode": "Indexed",
        "completions": 2,
        "parallelism": 2,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                }
            ]
        },
        "template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}
        },
    }
    code, status, _ = raw(api, "POST", jobs, {"metadata": {"name": "j"}, "spec": spec})
    assert code == 422
    assert any(c["field"] == "spec.podFailurePolicy" for c in status["details"]["causes"])
    spec["template"]["spec"]["restartPolicy"] = "Never"
    code, made, _ = raw(
        api, "POST", jobs, {"metadata": {"name": "j"}, "spec": {**spec, "suspend": True}}
    )
    assert code == 201
    assert made["spec"]["podReplacementPolicy"] == "Failed"
    assert (
        made["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"]
        == made["metadata"]["uid"]
    )
    _, current, _ = raw(api, "GET", f"{jobs}/j")  # the controller has written its status
    current["spec"]["completionMode"] = "NonIndexed"
    code, status, _ = raw(api, "PUT", f"{jobs}/j", current)
    assert code == 422 and "immutable" in status["message"]


def test_secrets_keep_string_data_as_base64_data(cluster: FakeCluster) -> None:
    core = client.CoreV1Api(cluster.client())
    core.create_namespaced_secret(
        NS,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"TOKEN": "hunter2"}),
    )
    found = core.read_namespaced_secret("s", NS)
    assert found.string_data is None
    assert base64.b64decode(found.data["TOKEN"]) == b"hunter2"


def test_service_account_tokens_get_only_what_their_role_grants(
    cluster: FakeCluster, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    core = client.CoreV1Api(cluster.client())
    rbac = client.RbacAuthorizationV1Api(cluster.client())
    core.create_namespaced_config_map(NS, _cm("mine"))
    core.create_namespaced_config_map(NS, _cm("other"))
    core.create_namespaced_service_account(
        NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sa"))
    )
    rbac.create_namespaced_role(
        NS,
        {
            "metadata": {"name": "r"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["mine"],
                    "verbs": ["get"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        NS,
        {
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": NS}],
        },
    )
    cluster.reconcile()  # the controllers make the account's token
    from kubernetes import config

    as_sa = config.new_client_from_config(
        str(cluster.write_kubeconfig(tmp_path / "sa", cluster.token_for(NS, "sa")))
    )
    sa_core = client.CoreV1Api(as_sa)
    assert sa_core.read_namespaced_config_map("mine", NS).data == {"k": "v"}
    for attempt in (
        lambda: sa_core.read_namespaced_config_map("other", NS),
        lambda: sa_core.list_namespaced_config_map(NS),
    ):
        with pytest.raises(client.ApiException) as denied:
            attempt()
        assert denied.value.status == 403
        assert (
            'User "system:serviceaccount:work:sa" cannot'
            in json.loads(denied.value.body)["message"]
        )


def test_faults_fail_the_next_matching_requests_and_everything_is_audited(
    cluster: FakeCluster,
) -> None:
    core = client.CoreV1Api(cluster.client())
    cluster.api.fail("create", "configmaps", 500)
    with pytest.raises(client.ApiException) as failed:
        core.create_namespaced_config_map(NS, _cm("a"))
    assert failed.value.status == 500
    core.create_namespaced_config_map(NS, _cm("a"))
    creates = cluster.api.requests(verb="create", resource="configmaps")
    assert [e.code for e in creates] == [500, 201]
    assert creates[-1].body["metadata"]["name"] == "a" and creates[-1].user == "admin"


def test_unauthenticated_requests_are_refused(cluster: FakeCluster) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(cluster.api.url + f"/api/v1/namespaces/{NS}/configmaps", timeout=10)
    assert refused.value.code == 401
