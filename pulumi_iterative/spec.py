"""TaskSpec: raw inputs -> one validated, normalized value.

`parse_spec` collects every problem at once and raises SpecError whose entries
name the field and the fix. It never calls a cloud, so `pulumi preview` can run
it. The spec round-trips through plain dicts (`to_dict`/`from_dict`) because
Pulumi state and the CLI's task files are plain data. The arguments, their
defaults and the unknown-field message come from arguments.py.

For Pulumi state the spec is kept portable (`portable=True`, `resolve_env=False`):
the workdir relative to the project and shell-inherited environment entries as
declared, so every checkout of a team's stack parses to the same value.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from . import catalog
from .arguments import (
    DEFAULT_PREEMPT_INTERVAL,
    FIELDS,
    STORAGE_FIELDS,
    default,
)
from .credentials import plain_credential_errors
from .errors import FieldError, SpecError

T = TypeVar("T")

MAX_PARALLELISM = 1000
# The agent sets these; a user value would silently lose.
RESERVED_ENV = frozenset(
    {"TASK_INDEX", "TASK_COUNT", "TASK_ID", "TASK_RESTARTS", "TASK_RESUMED", "TASK_AGENT_SOCKET"}
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_GLOB = re.compile(r"^[A-Za-z0-9_*?\[\]!]+$")
_TASK_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")
ENV_MAPS = ("environment", "secret_environment")


@dataclass(frozen=True)
class StorageSpec:
    # The folder uploaded, as the program declared it: relative to the Pulumi project (or
    # the task file), `~/...`, or absolute; "" = nothing uploaded. Kept in this portable
    # form so every checkout compares equal; `resolve_workdir` finds it in this checkout.
    workdir: str = default("storage.workdir")
    output: str = default("storage.output")  # relative to workdir, comes home on delete/pull
    exclude: tuple[str, ...] = ()  # rclone filter patterns never uploaded
    container: str = default("storage.container")  # existing bucket[/prefix] to use
    container_opts: tuple[tuple[str, str], ...] = ()
    checkpoint_interval: float = default("storage.checkpoint_interval")


@dataclass(frozen=True)
class TaskSpec:
    cloud: str
    region: str
    machine: str
    script: str
    disk_size: int = default("disk_size")
    spot: float = default("spot")
    image: str = default("image")
    parallelism: int = default("parallelism")
    timeout: int = default("timeout")
    # Entries with an empty value (and glob names) are taken from the shell: as parsed
    # for state they stay declared ("" values); `with_shell_values` fills them in.
    environment: tuple[tuple[str, str], ...] = ()
    secret_environment: tuple[tuple[str, str], ...] = ()
    storage: StorageSpec = field(default_factory=StorageSpec)
    permission_set: str = default("permission_set")
    resource_group: str = default("resource_group")  # azure: an existing group to work in
    tags: tuple[tuple[str, str], ...] = ()
    name: str = default("name")
    preempt_interval: float = default("preempt_interval")  # local cloud: rehearsed preemptions
    preempt_notice: float = default("preempt_notice")  # local cloud: SIGTERM this long before kill
    budget: float = default("budget")  # most the task may spend, in its prices' currency
    notional_price: float = default("notional_price")  # local cloud: price per machine-hour
    namespace: str = default("namespace")  # k8s: "" = the context's

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
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None) -> TaskSpec:
        """Rebuild a spec already validated (from state); re-validates to be safe.

        Environment stays as declared and the workdir portable: a state written with an
        absolute workdir inside `base_dir` (default: here) reads as the relative path.
        """
        return parse_spec(
            data, base_dir=base_dir, resolve_env=False, check_paths=False, portable=True
        )


def parse_spec(
    raw: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    resolve_env: bool = True,
    check_paths: bool = True,
    portable: bool = False,
) -> TaskSpec:
    """Validate and normalize task inputs; raise SpecError naming every bad field.

    `defaults` fill absent keys (stack config); `base_dir` anchors a relative
    workdir; `environ` is where empty environment values and glob names are
    looked up (the user's shell, not the machine's). With `resolve_env=False` they
    stay as declared. With `portable=True` the workdir stays as declared (relative
    to `base_dir` when inside it) instead of becoming this checkout's absolute path:
    the form Pulumi state keeps, equal from every checkout.
    """
    p = _Parser(
        raw,
        defaults or {},
        Path(base_dir or os.getcwd()),
        os.environ if environ is None else environ,
    )
    spec = p.parse(resolve_env=resolve_env, check_paths=check_paths, portable=portable)
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

    def parse(self, *, resolve_env: bool, check_paths: bool, portable: bool) -> TaskSpec | None:
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
            catalog.default_region(cloud) if cloud else default("region"),
        )
        machine = self.catalog_name("machine", cloud, catalog.resolve_machine, default("machine"))
        image = self.catalog_name("image", cloud, catalog.resolve_image, default("image"))
        disk_size = self.integer(
            "disk_size",
            default("disk_size"),
            low=-1,
            high=65536,
            fix="use -1 for the image's default size, or a size in GB",
        )
        if disk_size == 0:
            self.err("disk_size", "0 GB cannot hold an OS; use -1 for the image default")
        spot = self.number("spot", default("spot"))
        if spot is not None and spot < 0 and spot != -1:
            self.err(
                "spot",
                f"{spot} is not valid; use -1 for on-demand, 0 for spot at "
                "market price, or a positive maximum price per hour",
            )
        parallelism = self.integer(
            "parallelism",
            default("parallelism"),
            low=1,
            high=MAX_PARALLELISM,
            fix="use a machine count from 1 to 1000",
        )
        timeout = self.duration("timeout", default("timeout"))
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
        storage = self.storage(check_paths, portable)
        permission_set = self.get("permission_set", default("permission_set"))
        if not isinstance(permission_set, str):
            self.err(
                "permission_set",
                "expected a string (an instance profile ARN, service account email or identity id)",
            )
            permission_set = ""
        resource_group = self.get("resource_group", default("resource_group"))
        if not isinstance(resource_group, str):
            self.err("resource_group", "expected a string: the name of an existing resource group")
            resource_group = ""
        tags = self.string_map("tags", allow_glob=False)
        name = self.get("name", default("name"))
        if not isinstance(name, str) or (name and not _TASK_NAME.match(name)):
            self.err(
                "name",
                f"{name!r} is not valid; use 1-30 lowercase letters, digits and "
                "hyphens, starting and ending with a letter or digit",
            )
            name = ""
        preempt_interval = self.number("preempt_interval", default("preempt_interval"))
        preempt_notice = self.number("preempt_notice", default("preempt_notice"))
        if preempt_interval is not None and preempt_interval < 0:
            self.err("preempt_interval", "must be 0 (off) or a number of seconds")
        if preempt_notice is not None and preempt_notice < 0:
            self.err("preempt_notice", "must be 0 (kill without notice) or seconds of notice")
        budget = self.number("budget", 0.0)
        if budget is not None and budget < 0:
            self.err("budget", "must be 0 (no limit) or the most the task may spend, e.g. 20")
        notional_price = self.number("notional_price", 0.0)
        if notional_price is not None and notional_price < 0:
            self.err("notional_price", "must be 0 (free) or a price per machine-hour, e.g. 0.53")
        namespace = self.get("namespace", default("namespace"))
        if not isinstance(namespace, str):
            self.err("namespace", "expected a string: the name of a Kubernetes namespace")
            namespace = ""
        elif namespace and cloud not in (None, "k8s"):
            self.err(
                "namespace",
                f"is for cloud 'k8s' only (a Kubernetes namespace); remove it for {cloud!r}",
            )
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
            resource_group=resource_group.strip(),
            tags=tags,
            name=name,
            preempt_interval=float(preempt_interval or 0.0),
            preempt_notice=float(preempt_notice if preempt_notice is not None else 0),
            budget=float(budget or 0.0),
            notional_price=float(notional_price or 0.0),
            namespace=namespace,
        )
        from .clouds import get  # the cloud's own rules: data only, no SDK

        self.errors.extend(get(cloud).validate(spec))
        if spec.budget and not self.errors:
            self.budget_has_a_price(spec)
        return None if self.errors else spec

    def budget_has_a_price(self, spec: TaskSpec) -> None:
        from .clouds import get
        from .cost import CHOOSE_PRICED, pricing_for  # the snapshot only: no cloud call

        pricing = pricing_for(spec)
        if pricing.ceiling:
            return
        if get(spec.cloud).priced_at_create(spec.is_spot):
            return  # the cloud's live list prices it at create (the estimate says so)
        fix = (
            "set notional_price to rehearse a budget"
            if spec.cloud == "local"
            else "set notional_price to what one machine hour costs you in this cluster"
            if spec.cloud == "k8s"
            else CHOOSE_PRICED
        )
        self.err("budget", pricing.unpriced_budget(fix))

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
        if seconds is None or not math.isfinite(seconds) or seconds != int(seconds) or seconds <= 0:
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
        declared: dict[str, str] = {}
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
            if is_glob and val:
                self.err(
                    f"{name}.{key}",
                    "a glob name takes its values from your shell; leave its value empty",
                )
                continue
            declared[key] = val
        pairs = tuple(sorted(declared.items()))
        return with_shell_values(pairs, shell_values(pairs, self.environ)) if resolve else pairs

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

    def storage(self, check_paths: bool, portable: bool) -> StorageSpec:
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
            path = Path(resolve_workdir(workdir, self.base))
            if check_paths and not path.is_dir():
                self.err(
                    "storage.workdir",
                    f"{path} is not a folder; create it or point workdir at your project folder",
                )
            workdir = portable_workdir(workdir, self.base) if portable else str(path)
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
        interval = value.get("checkpoint_interval", default("storage.checkpoint_interval"))
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval < 0
        ):
            self.err(
                "storage.checkpoint_interval",
                "expected seconds between background checkpoints (0 turns them off)",
            )
            interval = default("storage.checkpoint_interval")
        return StorageSpec(
            workdir=workdir,
            output=output,
            exclude=tuple(exclude),
            container=container.strip(),
            container_opts=tuple(sorted((k, str(v)) for k, v in opts.items())),
            checkpoint_interval=float(interval),
        )


def portable_workdir(value: str, base: str | Path) -> str:
    """The workdir as Pulumi state keeps it, the same from every checkout.

    A path inside `base` (the project folder) becomes relative to it, whoever's checkout
    it was written from; `~/...` stays unexpanded (each user's own home); relative paths
    are normalized; other absolute paths stay as they are.
    """
    if not value:
        return ""
    if value.startswith("~"):
        return os.path.normpath(value)
    path = Path(os.path.normpath(value))
    if not path.is_absolute():
        return path.as_posix()
    for root in dict.fromkeys((os.path.normpath(base), os.path.realpath(base))):
        for candidate in dict.fromkeys((str(path), os.path.realpath(path))):
            with contextlib.suppress(ValueError):
                return Path(candidate).relative_to(root).as_posix()
    return str(path)


def resolve_workdir(value: str, base: str | Path) -> str:
    """The workdir in this checkout: an absolute path ("" for none)."""
    if not value:
        return ""
    return str((Path(base) / os.path.expanduser(value)).resolve())


def shell_values(
    declared: tuple[tuple[str, str], ...], environ: Mapping[str, str]
) -> dict[str, str]:
    """What the declared entries with an empty value and the glob names take from the
    shell `environ`: variable -> value (a variable the shell lacks is "")."""
    taken: dict[str, str] = {}
    for key, val in declared:
        if any(c in key for c in "*?["):
            taken.update(
                (var, environ[var])
                for var in sorted(environ)
                if fnmatch.fnmatchcase(var, key) and var not in RESERVED_ENV
            )
        elif val == "":
            taken[key] = environ.get(key, "")
    return taken


def with_shell_values(
    declared: tuple[tuple[str, str], ...], taken: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The variables the machine gets: the values `taken` from a shell, then the
    declared explicit values (an explicit value wins over a glob's match)."""
    explicit = {k: v for k, v in declared if v != "" and not any(c in k for c in "*?[")}
    return tuple(sorted({**taken, **explicit}.items()))


def missing_from_shell(
    declared: tuple[tuple[str, str], ...], environ: Mapping[str, str]
) -> list[str]:
    """Declared-empty variables the shell does not have (the task would get "")."""
    return [
        k for k, v in declared if v == "" and not any(c in k for c in "*?[") and k not in environ
    ]


def _plain_number(value: float | int) -> str:
    # Pulumi sends integers as floats; "8" should not become "8.0".
    return str(int(value)) if float(value).is_integer() else str(value)


def with_defaults(spec: TaskSpec, **changes: Any) -> TaskSpec:
    return replace(spec, **changes)
