"""Drive a Pulumi dynamic provider through the real provider server, over gRPC.

The Pulumi CLI is not available here, so this module plays the engine's part:
it starts ``python -u -m pulumi.dynamic`` (the server shipped in the pulumi
wheel, the same command the ``pulumi-resource-pulumi-python`` shim runs), reads
the port from its first stdout line, and calls Configure, Check, Diff, Create,
Read, Update and Delete with the request shapes the engine uses
(``sdk/go/common/resource/plugin/provider_plugin.go``).

Example fixture for a conftest.py::

    import pytest
    from pulumi_iterative.provider import TaskProvider
    from tests.provider_server import provider_server

    @pytest.fixture(scope="module")
    def task_server():
        # One server per module: each start costs about a second.
        with provider_server(TaskProvider(), config={"iterative:cloud": "local"}) as srv:
            yield srv

    def test_create(task_server):
        inputs, failures = task_server.check("train", {}, {"cloud": "local", "script": "true"})
        assert failures == []
        id_, outs = task_server.create("train", inputs)
        task_server.delete(id_, "train", outs, old_inputs=inputs)

How the engine and the server treat values (pulumi 3.272; checked in
``pulumi/dynamic/__main__.py``, ``pulumi/runtime/rpc.py`` and the engine's
provider_plugin.go), and what this harness therefore does:

* ``__provider``: ``dynamic.Resource`` adds the dill blob
  (``serialize_provider``) to the inputs under ``__provider``; the server
  unpickles the provider from ``news["__provider"]`` in Check/Diff (from the
  olds when that is unknown), from ``news`` in Create/Update, and from the
  stored *outputs* in Read/Delete (the blob an older version wrote is the one
  used).  It caches one provider instance per blob string, calls its
  ``configure`` once, on first use, with whatever config it holds at that
  moment, and shares it across its 4 worker threads.  The harness adds the
  blob of the provider it was given to every property bag that lacks one and
  strips it from what it returns (``keep_provider_key=True`` keeps it).  A bag
  that already carries ``__provider`` is sent as is: that is how a test plays
  state written by an old provider.
* Config: the engine sends ``ConfigureRequest.args`` (a Struct keyed by the
  namespaced stack keys, ``"iterative:cloud"``; a bare key set in a stack file
  is stored as ``"<project>:key"``) plus ``variables``
  (``"pulumi-python:config:<key>"`` -> string).  The server reads only ``args``
  and unwraps top-level secrets; ``Config.get("key")`` inside the provider
  prefixes bare keys with ``PULUMI_PROJECT``.  The harness prefixes bare keys
  with ``project``, sends both fields, and also sets ``PULUMI_PROJECT`` and
  ``PULUMI_CONFIG`` (JSON of the plain values) in the server's environment as
  the engine does.  Configure must come before the first resource call; the
  harness enforces that and calls it itself (with ``{}``) if a test did not.
* Secrets: the server answers Configure with ``acceptSecrets=False``, so the
  engine strips secret markers and the provider sees plain values.  After
  Check/Create/Update/Read the engine re-marks as secret every output whose
  name matches a secret input (recursing into objects, whole arrays).  The
  harness mirrors both: wrap an input in :class:`Secret`; it is sent plain and
  outputs of the same name come back wrapped in :class:`Secret`.
  Secret *config* values are sent wrapped (the engine keeps secrets in
  Configure) and arrive unwrapped in the provider.
* Numbers are protobuf doubles: ``1`` arrives as ``1.0`` both ways.
* ``None``: the SDK drops top-level ``None`` inputs before the engine sees
  them; the server's ``deserialize_properties`` drops ``None`` values from
  every dict at any depth but keeps ``None`` inside lists; top-level ``None``
  outputs are dropped by the server's ``serialize_properties``.  The harness
  drops top-level ``None`` and sends nested ones as null.
* Unknowns (preview only): sent as the string :data:`UNKNOWN`; Check and Diff
  hand the provider ``pulumi.output.Unknown`` objects, which come back as
  ``UNKNOWN``.  Preview never calls Create/Update on a dynamic provider
  (``supportsPreview=False``), so the harness refuses unknowns there.
* Errors: the server aborts a failing call with ``StatusCode.UNKNOWN`` and the
  full Python traceback as details; the harness raises :class:`ProviderError`.
  An answer the engine itself would reject (empty ID from Create, unknowns in
  outputs) raises :class:`EngineError`.
* ``pulumi.log.info/warn/error`` in the provider go to the server's stderr as
  ``"info: <msg>"``, ``"warning: <msg>"``, ``"error: <msg>"`` (the server has
  no engine address); ``log.debug`` is dropped.
  Read them with :meth:`ProviderServer.stderr_text`.

The server's environment is ``os.environ`` at start plus ``env``: a
module-scoped server does not see a per-test ``monkeypatch.setenv``, so pass
such settings with ``env=`` (or start a server per test).

Not mirrored: Handshake (the server does not implement it, and the engine
then falls back to Configure's answer), GetPluginInfo, custom timeouts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

PROVIDER_KEY = "__provider"
UNKNOWN: str = rpc.UNKNOWN  # the engine's wire form of a value not known until apply
DEFAULT_PROJECT = "iterative-test"
DEFAULT_STACK = "test"
DEFAULT_TYPE = "pulumi-python:dynamic:Resource"
REPO_ROOT = Path(__file__).resolve().parent.parent

_SIG_KEY = rpc._special_sig_key
_SECRET_SIG = rpc._special_secret_sig
_DYNAMIC_PACKAGE = "pulumi-python"


@dataclass(frozen=True)
class Secret:
    """A value the engine holds as secret (input marker / re-marked output)."""

    value: Any


class ProviderError(Exception):
    """A gRPC error returned by the provider server."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"{method} failed with {code.name}: {details}")

    @property
    def message(self) -> str:
        """The last line of the server's traceback, e.g. ``"ValueError: bad size"``."""
        lines = [line for line in self.details.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


class EngineError(Exception):
    """The provider answered, but the engine would reject the answer."""


@dataclass(frozen=True)
class ConfigureResult:
    accept_secrets: bool
    supports_preview: bool
    accept_resources: bool
    accept_outputs: bool


@dataclass(frozen=True)
class DiffResponse:
    """The engine's view of a DiffResponse. ``changes`` is None for DIFF_UNKNOWN."""

    changes: bool | None
    replaces: list[str]
    stables: list[str]
    delete_before_replace: bool
    diffs: list[str]
    detailed_diff: dict[str, str] | None


def provider_blob(provider: ResourceProvider) -> str:
    """The ``__provider`` string ``dynamic.Resource`` would send for ``provider``."""
    return serialize_provider(provider)


def make_urn(
    name: str,
    type_: str = DEFAULT_TYPE,
    *,
    parent_type: str | None = None,
    project: str = DEFAULT_PROJECT,
    stack: str = DEFAULT_STACK,
) -> str:
    """``urn:pulumi:<stack>::<project>::[<parent type>$]<type>::<name>``."""
    qualified = f"{parent_type}${type_}" if parent_type else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


# --- value conversion ------------------------------------------------------


def to_value(value: Any, *, keep_secrets: bool = False) -> struct_pb2.Value:
    """One Python value as the engine puts it on the wire."""
    if isinstance(value, Secret):
        if not keep_secrets:
            return to_value(value.value)
        wrapped = struct_pb2.Struct()
        wrapped.fields[_SIG_KEY].string_value = _SECRET_SIG
        wrapped.fields["value"].CopyFrom(to_value(value.value, keep_secrets=True))
        return struct_pb2.Value(struct_value=wrapped)
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    # bool first: it is an int subclass.
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return struct_pb2.Value(number_value=float(value))
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    if isinstance(value, Mapping):
        s = struct_pb2.Struct()
        for k, v in value.items():
            s.fields[str(k)].CopyFrom(to_value(v, keep_secrets=keep_secrets))
        return struct_pb2.Value(struct_value=s)
    if isinstance(value, list | tuple):
        items = [to_value(v, keep_secrets=keep_secrets) for v in value]
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=items))
    raise TypeError(f"unexpected input of type {type(value).__name__}")


def to_struct(props: Mapping[str, Any], *, keep_secrets: bool = False) -> struct_pb2.Struct:
    """A property bag as the engine sends it: top-level None dropped, like the SDK does."""
    s = struct_pb2.Struct()
    for k, v in props.items():
        if v is not None:
            s.fields[k].CopyFrom(to_value(v, keep_secrets=keep_secrets))
    return s


def from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        fields = value.struct_value.fields
        if _SIG_KEY in fields and fields[_SIG_KEY].string_value == _SECRET_SIG:
            return Secret(from_value(fields["value"]))
        return {k: from_value(v) for k, v in fields.items()}
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: from_value(v) for k, v in s.fields.items()}


def contains_secrets(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, Mapping):
        return any(contains_secrets(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_secrets(v) for v in value)
    return False


def annotate_secrets(outs: dict[str, Any], ins: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's annotateSecrets: outputs named like secret inputs become secret."""
    for key, in_value in ins.items():
        if key not in outs:
            continue
        out_value = outs[key]
        if isinstance(out_value, dict) and isinstance(in_value, Mapping):
            annotate_secrets(out_value, in_value)
        elif not isinstance(out_value, Secret) and contains_secrets(in_value):
            outs[key] = Secret(out_value)
    return outs


def _contains_unknown(value: Any) -> bool:
    if isinstance(value, Secret):
        return _contains_unknown(value.value)
    if isinstance(value, Mapping):
        return any(_contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_unknown(v) for v in value)
    return value == UNKNOWN


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- the server ------------------------------------------------------------


class ProviderServer:
    """A running ``python -m pulumi.dynamic`` and an engine-shaped client for it.

    ``provider`` is a ResourceProvider instance (pickled with dill, as
    ``dynamic.Resource`` does) or an already made blob string.  ``config``, if
    given, is sent with Configure right after start; otherwise call
    :meth:`configure` before the first resource call (or get ``{}``).
    ``urn`` arguments accept a full URN or a bare name (see :meth:`urn`).
    """

    def __init__(
        self,
        provider: ResourceProvider | str,
        *,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        project: str = DEFAULT_PROJECT,
        stack: str = DEFAULT_STACK,
        resource_type: str = DEFAULT_TYPE,
        parent_type: str | None = None,
        keep_provider_key: bool = False,
        rpc_timeout: float = 120.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.provider = provider
        self.blob = provider if isinstance(provider, str) else provider_blob(provider)
        # dynamic.Resource sends the blob as a secret unless the provider opts out.
        self._blob_secret = getattr(provider, "serialize_as_secret_always", True)
        self.project = project
        self.stack = stack
        self.resource_type = resource_type
        self.parent_type = parent_type
        self.keep_provider_key = keep_provider_key
        self.rpc_timeout = rpc_timeout
        self.start_timeout = start_timeout
        self._initial_config = None if config is None else self._namespaced(config)
        self._env = dict(env or {})
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._stub: provider_pb2_grpc.ResourceProviderStub | None = None
        self._tmpdir: str | None = None
        self._files: list[Any] = []
        self._final_stdout: str | None = None
        self._final_stderr: str | None = None
        self._lock = threading.Lock()  # serialises Configure
        self._configured = False
        self.configure_result: ConfigureResult | None = None
        self.port: int | None = None

    # -- lifecycle --

    def __enter__(self) -> ProviderServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("server already started")
        self._tmpdir = tempfile.mkdtemp(prefix="pulumi-dynamic-")
        stdout_path = Path(self._tmpdir, "stdout")
        stderr_path = Path(self._tmpdir, "stderr")
        # Files, not pipes: nobody has to drain them, so a chatty provider cannot block.
        out = stdout_path.open("wb")
        err = stderr_path.open("wb")
        self._files = [out, err]

        env = dict(os.environ)
        env.update(self._env)
        pythonpath = [str(REPO_ROOT)]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env["PULUMI_PROJECT"] = self.project
        if self._initial_config is not None:
            env["PULUMI_CONFIG"] = json.dumps(
                {k: self._variable(v) for k, v in self._initial_config.items()}
            )

        # -u as in the pulumi-resource-pulumi-python shim: the port line is written unflushed.
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=self._cwd,
        )
        try:
            self.port = self._wait_for_port(stdout_path)
            self._channel = grpc.insecure_channel(
                f"127.0.0.1:{self.port}", options=_GRPC_CHANNEL_OPTIONS
            )
            grpc.channel_ready_future(self._channel).result(timeout=self.start_timeout)
            self._stub = provider_pb2_grpc.ResourceProviderStub(self._channel)
            if self._initial_config is not None:
                self.configure(self._initial_config)
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self, stdout_path: Path) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = stdout_path.read_text(errors="replace")
            if "\n" in text:
                return int(text.split("\n", 1)[0].strip())
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"provider server exited with {self._proc.returncode} before printing "
                    f"its port; stderr:\n{self.stderr_text()}"
                )
            time.sleep(0.01)
        raise TimeoutError(
            f"provider server printed no port in {self.start_timeout}s; "
            f"stderr:\n{self.stderr_text()}"
        )

    def stop(self) -> None:
        """Close the channel, SIGINT the server (its own clean exit), kill if it hangs."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self._files:
            f.close()
        self._files = []
        if self._tmpdir is not None:
            self._final_stdout = self._read("stdout")
            self._final_stderr = self._read("stderr")
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _read(self, name: str) -> str:
        if self._tmpdir is None:
            return ""
        path = Path(self._tmpdir, name)
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr so far (pulumi.log output lands here)."""
        if self._final_stderr is not None:
            return self._final_stderr
        return self._read("stderr")

    def stdout_text(self) -> str:
        """The server's stdout: the port line, then anything the provider printed."""
        if self._final_stdout is not None:
            return self._final_stdout
        return self._read("stdout")

    # -- helpers --

    def urn(self, name: str) -> str:
        return make_urn(
            name,
            self.resource_type,
            parent_type=self.parent_type,
            project=self.project,
            stack=self.stack,
        )

    def _full_urn(self, urn: str) -> str:
        return urn if urn.startswith("urn:pulumi:") else self.urn(urn)

    @staticmethod
    def _name_and_type(urn: str) -> tuple[str, str]:
        parts = urn.split("::")
        return parts[-1], parts[-2].split("$")[-1]

    def _namespaced(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {(k if ":" in k else f"{self.project}:{k}"): v for k, v in config.items()}

    @staticmethod
    def _variable(value: Any) -> str:
        # The engine's `variables` (and PULUMI_CONFIG) hold plain strings; others as JSON.
        plain = _plain(value)
        return plain if isinstance(plain, str) else json.dumps(plain)

    def _bag(self, props: Mapping[str, Any] | None, *, add_provider: bool = True) -> dict:
        bag = dict(props or {})
        if add_provider and PROVIDER_KEY not in bag:
            bag[PROVIDER_KEY] = Secret(self.blob) if self._blob_secret else self.blob
        return bag

    def _result(self, props: dict[str, Any]) -> dict[str, Any]:
        if not self.keep_provider_key:
            props.pop(PROVIDER_KEY, None)
        return props

    def _call(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise RuntimeError("server is not running; use it as a context manager")
        try:
            return getattr(self._stub, method)(request, timeout=self.rpc_timeout)
        except grpc.RpcError as e:
            details = e.details() or ""
            if self.returncode is not None:
                details += f"\n[server exited with {self.returncode}; stderr:]\n"
                details += self.stderr_text()
            raise ProviderError(method, e.code(), details) from None

    def _ensure_configured(self) -> None:
        # The engine holds every resource call until Configure has answered.
        if self._configured:
            return
        with self._lock:
            if not self._configured:
                self._configure_locked({})

    @staticmethod
    def _refuse_unknowns(method: str, props: Mapping[str, Any]) -> None:
        if _contains_unknown(props):
            raise ValueError(f"{method} never gets unknowns: preview does not call it")

    def _check_outputs(self, method: str, outs: Mapping[str, Any]) -> None:
        if _contains_unknown(outs):
            raise EngineError(f"{method} returned unknown values outside preview: {outs}")

    # -- the engine's calls, in its order --

    def configure(self, config: Mapping[str, Any]) -> ConfigureResult:
        """Configure with stack config; bare keys become ``<project>:<key>``."""
        with self._lock:
            if self._configured:
                raise RuntimeError(
                    "Configure runs once, before any resource call: the server configures "
                    "each provider when it first unpickles it and never again"
                )
            return self._configure_locked(config)

    def _configure_locked(self, config: Mapping[str, Any]) -> ConfigureResult:
        namespaced = self._namespaced(config)
        request = provider_pb2.ConfigureRequest(
            variables={
                f"{_DYNAMIC_PACKAGE}:config:{k}": self._variable(v) for k, v in namespaced.items()
            },
            args=to_struct(namespaced, keep_secrets=True),
            acceptSecrets=True,
            acceptResources=True,
            sends_old_inputs=True,
            sends_old_inputs_to_delete=True,
            urn=make_urn(
                "default",
                f"pulumi:providers:{_DYNAMIC_PACKAGE}",
                project=self.project,
                stack=self.stack,
            ),
            name="default",
            type=f"pulumi:providers:{_DYNAMIC_PACKAGE}",
        )
        response = self._call("Configure", request)
        self.configure_result = ConfigureResult(
            accept_secrets=response.acceptSecrets,
            supports_preview=response.supportsPreview,
            accept_resources=response.acceptResources,
            accept_outputs=response.acceptOutputs,
        )
        self._configured = True
        return self.configure_result

    def check(
        self, urn: str, olds: Mapping[str, Any] | None, news: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Check(olds = old inputs or {} on create, news) -> (inputs, [(property, reason)])."""
        self._ensure_configured()
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        olds_bag = self._bag(olds, add_provider=bool(olds))
        news_bag = self._bag(news)
        response = self._call(
            "Check",
            provider_pb2.CheckRequest(
                urn=urn,
                name=name,
                type=type_,
                olds=to_struct(olds_bag),
                news=to_struct(news_bag),
                randomSeed=secrets.token_bytes(32),
            ),
        )
        inputs = annotate_secrets(from_struct(response.inputs), news_bag)
        failures = [(f.property, f.reason) for f in response.failures]
        return self._result(inputs), failures

    def diff(
        self,
        id_: str,
        urn: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        old_inputs: Mapping[str, Any] | None = None,
        ignore_changes: list[str] | None = None,
    ) -> DiffResponse:
        """Diff(olds = old *outputs*, news = checked new inputs)."""
        self._ensure_configured()
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        response = self._call(
            "Diff",
            provider_pb2.DiffRequest(
                id=id_,
                urn=urn,
                name=name,
                type=type_,
                olds=to_struct(self._bag(olds)),
                news=to_struct(self._bag(news)),
                old_inputs=to_struct(self._bag(old_inputs if old_inputs is not None else olds)),
                ignoreChanges=ignore_changes or [],
            ),
        )
        changes = {
            provider_pb2.DiffResponse.DIFF_UNKNOWN: None,
            provider_pb2.DiffResponse.DIFF_NONE: False,
            provider_pb2.DiffResponse.DIFF_SOME: True,
        }[response.changes]
        detailed = None
        if response.hasDetailedDiff:
            detailed = {
                k: provider_pb2.PropertyDiff.Kind.Name(v.kind)
                for k, v in response.detailedDiff.items()
            }
        return DiffResponse(
            changes=changes,
            replaces=list(response.replaces),
            stables=list(response.stables),
            delete_before_replace=response.deleteBeforeReplace,
            diffs=list(response.diffs),
            detailed_diff=detailed,
        )

    def create(self, urn: str, props: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create(checked inputs) -> (id, outputs)."""
        self._ensure_configured()
        self._refuse_unknowns("Create", props)
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        bag = self._bag(props)
        response = self._call(
            "Create",
            provider_pb2.CreateRequest(urn=urn, name=name, type=type_, properties=to_struct(bag)),
        )
        if not response.id:
            raise EngineError(f"plugin returned empty resource.ID from create '{urn}'")
        outs = from_struct(response.properties)
        self._check_outputs("Create", outs)
        return response.id, self._result(annotate_secrets(outs, bag))

    def read(
        self,
        id_: str,
        urn: str,
        props: Mapping[str, Any],
        *,
        inputs: Mapping[str, Any] | None = None,
        with_inputs: bool = False,
    ) -> tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, Any] | None]:
        """Read(id, props = stored outputs) -> (id, props); id "" means gone.

        With ``with_inputs=True`` returns ``(id, props, inputs_or_None)``.
        """
        self._ensure_configured()
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        state = self._bag(props)
        old_inputs = None if inputs is None else self._bag(inputs)
        request = provider_pb2.ReadRequest(
            id=id_, urn=urn, name=name, type=type_, properties=to_struct(state)
        )
        if old_inputs is not None:
            request.inputs.CopyFrom(to_struct(old_inputs))
        response = self._call("Read", request)
        outs = annotate_secrets(from_struct(response.properties), state)
        self._check_outputs("Read", outs)
        if not with_inputs:
            return response.id, self._result(outs)
        new_inputs = None
        if response.HasField("inputs"):
            new_inputs = self._result(
                annotate_secrets(from_struct(response.inputs), old_inputs or {})
            )
        return response.id, self._result(outs), new_inputs

    def update(
        self,
        id_: str,
        urn: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        *,
        old_inputs: Mapping[str, Any] | None = None,
        ignore_changes: list[str] | None = None,
    ) -> dict[str, Any]:
        """Update(olds = old outputs, news = checked new inputs) -> all new outputs."""
        self._ensure_configured()
        self._refuse_unknowns("Update", news)
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        news_bag = self._bag(news)
        response = self._call(
            "Update",
            provider_pb2.UpdateRequest(
                id=id_,
                urn=urn,
                name=name,
                type=type_,
                olds=to_struct(self._bag(olds)),
                news=to_struct(news_bag),
                old_inputs=to_struct(self._bag(old_inputs if old_inputs is not None else olds)),
                ignoreChanges=ignore_changes or [],
            ),
        )
        outs = from_struct(response.properties)
        self._check_outputs("Update", outs)
        return self._result(annotate_secrets(outs, news_bag))

    def delete(
        self,
        id_: str,
        urn: str,
        props: Mapping[str, Any],
        *,
        old_inputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete(id, props = stored outputs)."""
        self._ensure_configured()
        urn = self._full_urn(urn)
        name, type_ = self._name_and_type(urn)
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(
                id=id_,
                urn=urn,
                name=name,
                type=type_,
                properties=to_struct(self._bag(props)),
                old_inputs=to_struct(self._bag(old_inputs if old_inputs is not None else props)),
            ),
        )


@contextmanager
def provider_server(provider: ResourceProvider | str, **kw: Any) -> Iterator[ProviderServer]:
    """Fixture factory: ``with provider_server(MyProvider(), config={...}) as srv: ...``."""
    with ProviderServer(provider, **kw) as server:
        yield server
