"""TaskSpec: raw inputs -> one validated, normalized value.

`parse_spec` collects every problem at once and raises SpecError whose entries
name the field and the fix. It never calls a cloud, so `pulumi preview` can run
it. The spec round-trips through plain dicts (`to_dict`/`from_dict`) because
Pulumi state and the CLI's task files are plain data.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from . import catalog
from .credentials import plain_credential_errors
from .errors import FieldError, SpecError

T = TypeVar("T")

DEFAULT_TIMEOUT = 24 * 3600
DEFAULT_CHECKPOINT_INTERVAL = 10.0
DEFAULT_PREEMPT_INTERVAL = 60.0
DEFAULT_PREEMPT_NOTICE = 5.0
MAX_PARALLELISM = 1000
# The agent sets these; a user value would silently lose.
RESERVED_ENV = frozenset(
    {"TASK_INDEX", "TASK_COUNT", "TASK_ID", "TASK_RESTARTS", "TASK_RESUMED", "TASK_AGENT_SOCKET"}
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_GLOB = re.compile(r"^[A-Za-z0-9_*?\[\]!]+$")
_TASK_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")

FIELDS = (
    "cloud",
    "region",
    "machine",
    "disk_size",
    "spot",
    "image",
    "parallelism",
    "timeout",
    "environment",
    "secret_environment",
    "script",
    "storage",
    "permission_set",
    "tags",
    "name",
    "preempt_interval",
    "preempt_notice",
)
STORAGE_FIELDS = (
    "workdir",
    "output",
    "exclude",
    "container",
    "container_opts",
    "checkpoint_interval",
)


@dataclass(frozen=True)
class StorageSpec:
    workdir: str = ""  # absolute path of the local folder uploaded; "" = nothing uploaded
    output: str = ""  # path relative to workdir brought back on delete/pull; "" = nothing
    exclude: tuple[str, ...] = ()  # rclone filter patterns never uploaded
    container: str = ""  # existing bucket[/prefix] to use instead of a new one
    container_opts: tuple[tuple[str, str], ...] = ()
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL


@dataclass(frozen=True)
class TaskSpec:
    cloud: str
    region: str
    machine: str
    script: str
    disk_size: int = -1
    spot: float = -1.0
    image: str = "ubuntu"
    parallelism: int = 1
    timeout: int = DEFAULT_TIMEOUT
    environment: tuple[tuple[str, str], ...] = ()
    secret_environment: tuple[tuple[str, str], ...] = ()
    storage: StorageSpec = field(default_factory=StorageSpec)
    permission_set: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    name: str = ""
    preempt_interval: float = 0.0  # local cloud: seconds between rehearsed preemptions
    preempt_notice: float = DEFAULT_PREEMPT_NOTICE  # local cloud: SIGTERM this long before kill

    @property
    def is_spot(self) -> bool:
        return self.spot >= 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data with dicts for maps (Pulumi and YAML friendly)."""
        d = asdict(self)
        for key in ("environment", "secret_environment", "tags"):
            d[key] = dict(getattr(self, key))
        d["storage"]["exclude"] = list(self.storage.exclude)
        d["storage"]["container_opts"] = dict(self.storage.container_opts)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Rebuild a spec already validated (from state); re-validates to be safe."""
        return parse_spec(data, resolve_env=False, check_paths=False)


def parse_spec(
    raw: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    resolve_env: bool = True,
    check_paths: bool = True,
) -> TaskSpec:
    """Validate and normalize task inputs; raise SpecError naming every bad field.

    `defaults` fill absent keys (stack config); `base_dir` anchors a relative
    workdir; `environ` is where empty environment values and glob names are
    looked up (the user's shell, not the machine's).
    """
    p = _Parser(
        raw,
        defaults or {},
        Path(base_dir or os.getcwd()),
        os.environ if environ is None else environ,
    )
    spec = p.parse(resolve_env=resolve_env, check_paths=check_paths)
    if p.errors:
        raise SpecError(p.errors)
    assert spec is not None
    return spec


class _Parser:
    def __init__(
        self,
        raw: Mapping[str, Any],
        defaults: Mapping[str, Any],
        base: Path,
        environ: Mapping[str, str],
    ) -> None:
        self.raw, self.defaults, self.base, self.environ = raw, defaults, base, environ
        self.errors: list[FieldError] = []

    def err(self, name: str, message: str) -> None:
        self.errors.append(FieldError(name, message))

    def get(self, name: str, default: Any = None) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            value = self.defaults.get(name)
        return default if value is None or value == "" else value

    def parse(self, *, resolve_env: bool, check_paths: bool) -> TaskSpec | None:
        if not isinstance(self.raw, Mapping):
            self.err("inputs", "expected a mapping of task arguments")
            return None
        unknown = sorted(set(self.raw) - set(FIELDS) - {"__provider"})
        for key in unknown:
            self.err(key, f"unknown argument; the arguments are {', '.join(FIELDS)}")

        cloud = self.cloud()
        region = self.catalog_name(
            "region",
            cloud,
            catalog.resolve_region,
            catalog.default_region(cloud) if cloud else "us-east",
        )
        machine = self.catalog_name("machine", cloud, catalog.resolve_machine, "m")
        image = self.catalog_name("image", cloud, catalog.resolve_image, "ubuntu")
        disk_size = self.integer(
            "disk_size",
            -1,
            low=-1,
            high=65536,
            fix="use -1 for the image's default size, or a size in GB",
        )
        if disk_size == 0:
            self.err("disk_size", "0 GB cannot hold an OS; use -1 for the image default")
        spot = self.number("spot", -1.0)
        if spot is not None and spot < 0 and spot != -1:
            self.err(
                "spot",
                f"{spot} is not valid; use -1 for on-demand, 0 for spot at "
                "market price, or a positive maximum price per hour",
            )
        parallelism = self.integer(
            "parallelism", 1, low=1, high=MAX_PARALLELISM, fix="use a machine count from 1 to 1000"
        )
        timeout = self.duration("timeout", DEFAULT_TIMEOUT)
        environment = self.env("environment", resolve_env)
        self.errors += plain_credential_errors(self.get("environment", {}))
        secret_environment = self.env("secret_environment", resolve_env)
        clash = sorted(dict(environment).keys() & dict(secret_environment).keys())
        if clash:
            self.err(
                "secret_environment",
                f"{', '.join(clash)} also set in environment; keep each variable in one of the two",
            )
        script = self.script()
        storage = self.storage(check_paths)
        permission_set = self.get("permission_set", "")
        if not isinstance(permission_set, str):
            self.err(
                "permission_set",
                "expected a string (an instance profile ARN, service account email or identity id)",
            )
            permission_set = ""
        tags = self.string_map("tags", allow_glob=False)
        name = self.get("name", "")
        if not isinstance(name, str) or (name and not _TASK_NAME.match(name)):
            self.err(
                "name",
                f"{name!r} is not valid; use 1-30 lowercase letters, digits and "
                "hyphens, starting and ending with a letter or digit",
            )
            name = ""
        preempt_interval = self.number("preempt_interval", 0.0)
        preempt_notice = self.number("preempt_notice", DEFAULT_PREEMPT_NOTICE)
        if preempt_interval is not None and preempt_interval < 0:
            self.err("preempt_interval", "must be 0 (off) or a number of seconds")
        if preempt_notice is not None and preempt_notice < 0:
            self.err("preempt_notice", "must be 0 (kill without notice) or seconds of notice")
        if cloud == "local" and spot is not None and spot >= 0 and not preempt_interval:
            preempt_interval = DEFAULT_PREEMPT_INTERVAL

        if self.errors or cloud is None:
            return None
        spec = TaskSpec(
            cloud=cloud,
            region=region,
            machine=machine,
            script=script,
            disk_size=disk_size,
            spot=spot,
            image=image,
            parallelism=parallelism,
            timeout=timeout,
            environment=environment,
            secret_environment=secret_environment,
            storage=storage,
            permission_set=permission_set,
            tags=tags,
            name=name,
            preempt_interval=float(preempt_interval or 0.0),
            preempt_notice=float(preempt_notice if preempt_notice is not None else 0),
        )
        from .clouds import get  # the cloud's own rules: data only, no SDK

        self.errors.extend(get(cloud).validate(spec))
        return None if self.errors else spec

    # --- one method per kind of field -------------------------------------------

    def cloud(self) -> str | None:
        value = self.get("cloud")
        if value is None:
            self.err(
                "cloud",
                "required; set it on the task or once per stack with "
                "`pulumi config set iterative:cloud local`",
            )
            return None
        if not isinstance(value, str):
            self.err("cloud", f"expected a string, one of {', '.join(catalog.known_clouds())}")
            return None
        try:
            cloud = catalog.normalize_cloud(value)
        except catalog.CatalogError as exc:
            self.err("cloud", str(exc))
            return None
        from .clouds import CLOUDS  # names only: no cloud module is loaded

        if cloud not in CLOUDS:
            self.err("cloud", f"{cloud!r} has no backend yet; available: {', '.join(CLOUDS)}")
            return None
        return cloud

    def catalog_name(
        self, name: str, cloud: str | None, resolve: Callable[[str, str], object], default: str
    ) -> str:
        value = self.get(name, default)
        if not isinstance(value, str):
            self.err(name, "expected a string")
            return default
        if cloud:
            try:
                resolve(cloud, value)
            except catalog.CatalogError as exc:
                self.err(name, str(exc))
        return value.strip()

    def number(self, name: str, default: float) -> float | None:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.err(name, f"expected a number, got {value!r}")
            return None
        try:
            number = float(value)
        except ValueError:
            self.err(name, f"expected a number, got {value!r}")
            return None
        if number != number or number in (float("inf"), float("-inf")):
            self.err(name, "expected a finite number")
            return None
        return number

    def integer(self, name: str, default: int, *, low: int, high: int, fix: str) -> int:
        number = self.number(name, default)
        if number is None:
            return default
        if number != int(number) or not low <= number <= high:
            self.err(name, f"{self.get(name)!r} is not valid; {fix}")
            return default
        return int(number)

    def duration(self, name: str, default: int) -> int:
        value = self.get(name, default)
        seconds: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            m = _DURATION.match(value)
            if m and any(m.groups()):
                d, h, mi, s = (int(g or 0) for g in m.groups())
                seconds = float(((d * 24 + h) * 60 + mi) * 60 + s)
        if seconds is None or seconds != int(seconds) or seconds <= 0:
            self.err(
                name,
                f"{value!r} is not valid; give whole seconds (3600) or a duration like '1h30m'",
            )
            return default
        return int(seconds)

    def string_map(self, name: str, *, allow_glob: bool) -> tuple[tuple[str, str], ...]:
        value = self.get(name, {})
        if not isinstance(value, Mapping):
            self.err(name, "expected a mapping of names to strings")
            return ()
        out = []
        for key, val in value.items():
            if not isinstance(key, str) or not key:
                self.err(name, f"{key!r} is not a valid name")
                continue
            if val is None:
                val = ""
            if isinstance(val, bool) or not isinstance(val, (str, int, float)):
                self.err(f"{name}.{key}", "expected a string value")
                continue
            out.append((key, val if isinstance(val, str) else _plain_number(val)))
        return tuple(sorted(out))

    def env(self, name: str, resolve: bool) -> tuple[tuple[str, str], ...]:
        resolved: dict[str, str] = {}
        for key, val in self.string_map(name, allow_glob=True):
            is_glob = any(c in key for c in "*?[")
            if not (_ENV_GLOB.match(key) if is_glob else _ENV_NAME.match(key)):
                self.err(
                    f"{name}.{key}",
                    "is not a valid variable name; use letters, digits "
                    "and underscores (globs like 'AWS_*' are allowed)",
                )
                continue
            if key in RESERVED_ENV:
                self.err(
                    f"{name}.{key}", "is set by the agent on every machine; choose another name"
                )
                continue
            if not resolve:
                resolved[key] = val
            elif is_glob:
                if val:
                    self.err(
                        f"{name}.{key}",
                        "a glob name takes its values from your shell; leave its value empty",
                    )
                    continue
                for var in sorted(self.environ):
                    if fnmatch.fnmatchcase(var, key) and var not in RESERVED_ENV:
                        resolved[var] = self.environ[var]
            elif val == "":
                resolved[key] = self.environ.get(key, "")
            else:
                resolved[key] = val
        return tuple(sorted(resolved.items()))

    def script(self) -> str:
        value = self.get("script")
        if not isinstance(value, str) or not value.strip():
            self.err(
                "script", "required: the commands to run, e.g. '#!/bin/bash\\npython train.py'"
            )
            return ""
        if not value.startswith("#!"):
            value = "#!/bin/sh\n" + value
        if not value.endswith("\n"):
            value += "\n"
        return value

    def storage(self, check_paths: bool) -> StorageSpec:
        value = self.get("storage", {})
        if not isinstance(value, Mapping):
            self.err("storage", "expected a mapping with workdir, output, exclude, ...")
            return StorageSpec()
        for key in sorted(set(value) - set(STORAGE_FIELDS)):
            self.err(
                f"storage.{key}", f"unknown; the storage fields are {', '.join(STORAGE_FIELDS)}"
            )
        workdir = value.get("workdir") or ""
        if not isinstance(workdir, str) or "\x00" in workdir:
            self.err("storage.workdir", "expected a folder path")
            workdir = ""
        if workdir:
            path = (self.base / os.path.expanduser(workdir)).resolve()
            if check_paths and not path.is_dir():
                self.err(
                    "storage.workdir",
                    f"{path} is not a folder; create it or point workdir at your project folder",
                )
            workdir = str(path)
        output = value.get("output") or ""
        if not isinstance(output, str):
            self.err("storage.output", "expected a path relative to workdir")
            output = ""
        output = output.strip().strip("/") if output else ""
        if output and (os.path.isabs(value.get("output", "")) or ".." in Path(output).parts):
            self.err("storage.output", f"{output!r} must be a path inside workdir, like 'results'")
        if output and not workdir:
            self.err("storage.output", "needs storage.workdir: outputs are brought back into it")
        exclude = value.get("exclude") or []
        if (
            isinstance(exclude, str)
            or not isinstance(exclude, (list, tuple))
            or not all(isinstance(e, str) and e for e in exclude)
        ):
            self.err("storage.exclude", "expected a list of patterns like ['*.tmp', '.venv/']")
            exclude = []
        container = value.get("container") or ""
        if not isinstance(container, str):
            self.err("storage.container", "expected 'bucket' or 'bucket/prefix'")
            container = ""
        opts = value.get("container_opts") or {}
        if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
            self.err("storage.container_opts", "expected a mapping of option names to strings")
            opts = {}
        interval = value.get("checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            self.err(
                "storage.checkpoint_interval",
                "expected seconds between background checkpoints (0 turns them off)",
            )
            interval = DEFAULT_CHECKPOINT_INTERVAL
        return StorageSpec(
            workdir=workdir,
            output=output,
            exclude=tuple(exclude),
            container=container.strip(),
            container_opts=tuple(sorted((k, str(v)) for k, v in opts.items())),
            checkpoint_interval=float(interval),
        )


def _plain_number(value: float | int) -> str:
    # Pulumi sends integers as floats; "8" should not become "8.0".
    return str(int(value)) if float(value).is_integer() else str(value)


def with_defaults(spec: TaskSpec, **changes: Any) -> TaskSpec:
    return replace(spec, **changes)
