"""The component's resource graph under pulumi.runtime.set_mocks (no provider is called)."""

from __future__ import annotations

import base64

import dill
import pulumi
import pytest

from pulumi_iterative.provider import OUTPUTS, TaskProvider


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ.endswith("iterative:Task"):
            outputs.update(
                task_id="train-abcdefgh12",
                status={"state": "running"},
                events=[],
                logs=["hello\n"],
                addresses=[],
            )
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture
def mocks():
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)
    pulumi.runtime.set_all_config({})
    yield recorder
    pulumi.runtime.set_all_config({})


def _by_type(recorder: Recorder, suffix: str):
    return [r for r in recorder.resources if r.typ.endswith(suffix)]


@pulumi.runtime.test
def test_graph_type_tokens_and_outputs(mocks: Recorder):
    from pulumi_iterative import IterativeTask, Storage

    task = IterativeTask(
        "train",
        cloud="local",
        script="python train.py",
        spot=0,
        storage=Storage(workdir=".", output="results"),
    )

    def check(values):
        task_id, status, logs = values
        (component,) = _by_type(mocks, "iterative:index:IterativeTask")
        (child,) = _by_type(mocks, "pulumi-python:dynamic/iterative:Task")
        assert component.name == child.name == "train"
        assert child.inputs["cloud"] == "local" and child.inputs["spot"] == 0
        # Only what the program gave: the provider's check fills the declared defaults.
        assert child.inputs["storage"] == {"workdir": ".", "output": "results"}
        assert task_id == "train-abcdefgh12" and status == {"state": "running"}
        assert logs == ["hello\n"]

    return pulumi.Output.all(task.task_id, task.status, task.logs).apply(check)


@pulumi.runtime.test
def test_provider_is_serialized_by_reference_without_state(mocks: Recorder):
    from pulumi_iterative import IterativeTask

    task = IterativeTask("t", cloud="local", script="x")

    def check(_):
        (child,) = _by_type(mocks, "iterative:Task")
        blob = child.inputs["__provider"]
        if isinstance(blob, dict):  # serialized providers are secrets: unwrap the envelope
            blob = blob["value"]
        provider = dill.loads(base64.b64decode(blob))
        assert type(provider) is TaskProvider
        assert provider.__dict__ == {}  # no client, socket or lock rides in the state
        # By reference: the module path appears, the class body does not.
        raw = base64.b64decode(blob)
        assert b"pulumi_iterative.provider" in raw and b"def create" not in raw

    return task.task_id.apply(check)


@pulumi.runtime.test
def test_stack_config_fills_defaults_and_arguments_win(mocks: Recorder):
    from pulumi_iterative import IterativeTask, IterativeTaskArgs

    pulumi.runtime.set_all_config(
        {
            "iterative:cloud": "local",
            "iterative:machine": "l",
            "iterative:region": "eu-west",
            "iterative:tags": '{"team": "ml"}',
        }
    )
    task = IterativeTask("t", IterativeTaskArgs(script="x", machine="m+t4", tags={"run": "1"}))

    def check(_):
        (child,) = _by_type(mocks, "iterative:Task")
        assert child.inputs["cloud"] == "local" and child.inputs["region"] == "eu-west"
        assert child.inputs["machine"] == "m+t4"  # the argument wins over config
        assert child.inputs["tags"] == {"team": "ml", "run": "1"}

    return task.task_id.apply(check)


@pulumi.runtime.test
def test_secret_environment_stays_secret(mocks: Recorder):
    from pulumi_iterative import IterativeTask

    task = IterativeTask("t", cloud="local", script="x", secret_environment={"HF_TOKEN": "hunter2"})

    def check(_):
        (child,) = _by_type(mocks, "iterative:Task")
        sent = child.inputs["secret_environment"]
        # The engine receives it wrapped as a secret, never as a plain map.
        assert isinstance(sent, dict) and sent.get("value") == {"HF_TOKEN": "hunter2"}
        assert set(sent) - {"value"}, sent

    return task.task_id.apply(check)


def test_unknown_argument_is_named():
    from pulumi_iterative.component import _props

    with pytest.raises(TypeError, match="machne"):
        _props(None, {"machne": "m"})


def test_outputs_are_declared_on_the_resource():
    # Only declared keys come back from the engine: every computed output is declared.
    assert set(OUTPUTS) >= {
        "task_id",
        "status",
        "events",
        "logs",
        "addresses",
        "bucket",
        "ref",
        "inherited",
    }


@pulumi.runtime.test
def test_a_task_is_called_what_its_user_called_it(mocks: Recorder):
    """Without `name`, the resource's name names the task (and so every cloud object)."""
    from pulumi_iterative import IterativeTask

    first = IterativeTask("Train_Big.v2", cloud="local", script="x")
    second = IterativeTask("other", cloud="local", script="x", name="chosen")

    def check(_):
        names = {r.name: r.inputs.get("name") for r in _by_type(mocks, "iterative:Task")}
        assert names == {"Train_Big.v2": "train-big-v2", "other": "chosen"}

    return pulumi.Output.all(first.task_id, second.task_id).apply(check)


def test_a_task_made_before_names_defaulted_is_not_replaced():
    """Its state says name "", the program now sends the resource's name: no change."""
    from pulumi_iterative.spec import parse_spec

    provider = TaskProvider()
    old = {**parse_spec({"cloud": "local", "script": "x"}).to_dict(), "task_id": "task-abcdefgh12"}
    assert old["name"] == ""
    new = provider.check({}, {"cloud": "local", "script": "x", "name": "train"}).inputs
    assert provider.diff("id", old, new).changes is False
    renamed = provider.check({}, {"cloud": "local", "script": "x", "name": "other"}).inputs
    assert provider.diff("id", new, renamed).replaces == ["name"]
