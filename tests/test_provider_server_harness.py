"""The provider-server harness against the real ``python -m pulumi.dynamic``."""

from __future__ import annotations

import grpc
import pytest

from tests.echo_provider import EchoProvider
from tests.provider_server import (
    UNKNOWN,
    EngineError,
    ProviderError,
    ProviderServer,
    Secret,
    provider_blob,
    provider_server,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server():
    # One server for the module: a start costs about a second on this machine.
    config = {"iterative:cloud": "local", "greeting": Secret("hello")}
    with provider_server(EchoProvider(), config=config) as srv:
        yield srv


def test_server_refuses_secrets_and_previews(server: ProviderServer):
    # Why secrets arrive plain and why preview never calls create/update.
    assert server.configure_result is not None
    assert server.configure_result.accept_secrets is False
    assert server.configure_result.supports_preview is False


def test_check_fills_defaults_and_ints_become_floats(server: ProviderServer):
    inputs, failures = server.check("a", {}, {"name": "a", "count": 3})
    assert failures == []
    assert inputs == {"name": "a", "count": 3.0, "size": 1.0}
    assert type(inputs["count"]) is float
    assert type(inputs["size"]) is float


def test_check_failure_names_the_field(server: ProviderServer):
    inputs, failures = server.check("a", {}, {"name": "a", "size": -1})
    assert failures == [("size", "size must be >= 0, got -1")]
    assert inputs["size"] == -1.0


def test_check_passes_unknowns_through_in_preview(server: ProviderServer):
    inputs, failures = server.check("a", {}, {"name": UNKNOWN, "size": UNKNOWN})
    assert failures == []
    assert inputs == {"name": UNKNOWN, "size": UNKNOWN}


def test_create_returns_id_outputs_and_config(server: ProviderServer):
    id_, outs = server.create("a", {"name": "a", "size": 2})
    assert id_ == "echo-a"
    assert outs["computed"] == "computed-a"
    # The provider itself saw a float, not the int the test sent.
    assert outs["seen"] == {"name": "str", "size": "float"}
    assert type(outs["size"]) is float
    # Namespaced key as given; bare key prefixed with the project; secret config unwrapped.
    assert outs["cloud"] == "local"
    assert outs["greeting"] == "hello"
    # A top-level None output is dropped; the blob is not handed back.
    assert "dropped" not in outs
    assert "__provider" not in outs


def test_nones_dropped_from_dicts_kept_in_lists(server: ProviderServer):
    props = {"name": "n", "top": None, "meta": {"a": None, "b": 2}, "items": [1, None]}
    _, outs = server.create("n", props)
    assert "top" not in outs["seen"]
    assert outs["meta"] == {"b": 2.0}
    assert outs["items"] == [1.0, None]


def test_create_error_is_readable(server: ProviderServer):
    with pytest.raises(ProviderError) as info:
        server.create("f", {"name": "f", "fail": "boom"})
    err = info.value
    assert err.method == "Create"
    assert err.code == grpc.StatusCode.UNKNOWN
    assert err.message == "RuntimeError: echo create failed: boom"
    assert "Traceback" in err.details


def test_empty_create_id_is_rejected_like_the_engine(server: ProviderServer):
    with pytest.raises(EngineError, match=r"empty resource\.ID"):
        server.create("e", {"name": "e", "empty_id": True})


def test_create_refuses_unknowns(server: ProviderServer):
    with pytest.raises(ValueError, match="preview"):
        server.create("u", {"name": UNKNOWN})


def test_diff_sees_old_outputs(server: ProviderServer):
    inputs, _ = server.check("d", {}, {"name": "d", "size": 1})
    id_, outs = server.create("d", inputs)

    same = server.diff(id_, "d", outs, inputs, old_inputs=inputs)
    assert same.changes is False
    assert same.replaces == []

    bigger = server.diff(id_, "d", outs, {**inputs, "size": 5}, old_inputs=inputs)
    assert bigger.changes is True
    assert bigger.replaces == []
    assert bigger.delete_before_replace is False

    renamed = server.diff(id_, "d", outs, {**inputs, "name": "d2"}, old_inputs=inputs)
    assert renamed.changes is True
    assert renamed.replaces == ["name"]
    assert renamed.delete_before_replace is True


def test_update_read_delete_round_trip(server: ProviderServer):
    inputs, _ = server.check("r", {}, {"name": "r", "size": 1})
    id_, outs = server.create("r", inputs)

    news, failures = server.check("r", inputs, {"name": "r", "size": 4})
    assert failures == []
    new_outs = server.update(id_, "r", outs, news, old_inputs=inputs)
    # Update replaces all outputs: the computed ones must be there again.
    assert new_outs["size"] == 4.0
    assert new_outs["computed"] == "computed-r"

    read_id, state = server.read(id_, "r", new_outs, inputs=news)
    assert read_id == id_
    assert state == new_outs

    gone_id, _ = server.read(id_, "r", {**new_outs, "gone": True})
    assert gone_id == ""

    server.delete(id_, "r", new_outs, old_inputs=news)
    assert "info: echo: deleting echo-r" in server.stderr_text()


def test_secret_inputs_arrive_plain_and_outputs_are_re_marked(server: ProviderServer):
    inputs, _ = server.check("s", {}, {"name": "s", "password": Secret("pw")})
    assert inputs["password"] == Secret("pw")
    _, outs = server.create("s", inputs)
    assert outs["seen"]["password"] == "str"  # no secret wrapper reached the provider
    assert outs["password"] == Secret("pw")  # same name as a secret input: secret again
    assert outs["computed"] == "computed-s"  # any other output stays plain


def test_blob_in_props_wins(server: ProviderServer):
    # Read/Delete unpickle the provider stored in state, not the program's.
    old = provider_blob(EchoProvider(label="v0"))
    id_, outs = server.create("o", {"name": "o", "__provider": old})
    assert id_ == "v0-o"
    assert outs["cloud"] == "local"  # a newly seen blob is configured too


def test_stderr_captures_pulumi_log(server: ProviderServer):
    server.create("l", {"name": "l"})
    assert "info: echo: creating l" in server.stderr_text()


def test_configure_only_once(server: ProviderServer):
    with pytest.raises(RuntimeError, match="once"):
        server.configure({"iterative:cloud": "aws"})


def test_explicit_configure_then_clean_stop():
    with ProviderServer(EchoProvider(), keep_provider_key=True) as srv:
        result = srv.configure({"iterative:cloud": "aws", "greeting": "hi"})
        assert result.accept_secrets is False
        _, outs = srv.create("c", {"name": "c"})
        assert (outs["cloud"], outs["greeting"]) == ("aws", "hi")
        # dynamic.Resource sends the blob as a secret, so the engine stores it as one.
        assert outs["__provider"] == Secret(srv.blob)
    assert srv.returncode == 0
    assert "info: echo: creating c" in srv.stderr_text()
