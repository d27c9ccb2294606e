"""Every argument of a task, declared once.

Each `Argument` says its name, kind, default, help text, whether a change replaces the
task or updates it in place, whether it is secret, and where else it can be given (a
stack config key, a CLI flag). Everything else is derived from `ARGUMENTS`:

    spec.py        the known fields, the unknown-field message, the defaults
    component.py   IterativeTaskArgs and Storage, the stack-config keys, secret inputs
    provider.py    which changes replace the task and which update it in place
    cli.py         the task-file keys and the flags of `run` and `create`
    README.md      the argument table (a test compares it with `markdown_table()`)

No Pulumi and no cloud here: the provider, the CLI and the tests all import it.
`python -m pulumi_iterative.arguments` prints the README's table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["str", "text", "int", "number", "duration", "map", "list"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # no default: the task cannot run without it

DEFAULT_TIMEOUT = 24 * 3600
DEFAULT_CHECKPOINT_INTERVAL = 10.0
DEFAULT_PREEMPT_INTERVAL = 60.0  # what `spot >= 0` on the local cloud turns into
DEFAULT_PREEMPT_NOTICE = 5.0


@dataclass(frozen=True)
class Argument:
    """One argument: `name` is `storage.<field>` for the storage group's fields."""

    name: str
    kind: Kind
    default: Any
    help: str  # Markdown, one or two sentences: the README's "meaning" column
    replaces: bool = True  # a change starts a new task; False: updated in place
    secret: bool = False  # kept secret in Pulumi state, never in machine user-data
    stack_config: Literal["", "value", "merge"] = ""  # `iterative:<name>` fills it when unset
    flag: str = ""  # the CLI flag; "" derives it from the name, "-" for none
    default_doc: str = ""  # how the README states the default, when the value alone cannot

    @property
    def field(self) -> str:
        """The key inside its group: `workdir` for `storage.workdir`."""
        return self.name.rpartition(".")[2]

    @property
    def group(self) -> str:
        """The top-level argument it belongs to: `storage` for `storage.workdir`."""
        return self.name.partition(".")[0]

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def doc_default(self) -> str:
        if self.default_doc:
            return self.default_doc
        if self.default is REQUIRED:
            return "required"
        if self.default in (None, ""):
            return "none"
        return f"`{render(self.kind, self.default)}`"


def render(kind: Kind, value: Any) -> str:
    """A default as a user writes it: 86400 seconds is `24h`, 10.0 is `10`."""
    if kind == "duration" and isinstance(value, int) and value % 3600 == 0:
        return f"{value // 3600}h"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if isinstance(value, (list, tuple)):
        return "[]" if not value else str(list(value))
    return str(value)


ARGUMENTS: tuple[Argument, ...] = (
    Argument(
        "cloud",
        "str",
        REQUIRED,
        "`local`, `aws`, `gcp`, `azure` (or `az`), `k8s` (or `kubernetes`)",
        stack_config="value",
        default_doc="stack config, else required",
    ),
    Argument(
        "region",
        "str",
        "us-east",
        "`us-east`, `us-west`, `eu-north`, `eu-west`, or the cloud's own region name "
        "(on k8s: the kubeconfig context)",
        stack_config="value",
        default_doc="`us-east` (`local` on local and k8s)",
    ),
    Argument(
        "machine",
        "str",
        "m",
        "`s`, `m`, `l`, `xl`, optionally `+t4`, `+a10g`, `+l4`, `+a100`, `+h100` "
        "(old `+k80`/`+v100` still resolve), or a native type",
        stack_config="value",
    ),
    Argument(
        "disk_size",
        "int",
        -1,
        "root disk in GB, `-1` for the image's default",
        stack_config="value",
    ),
    Argument(
        "spot",
        "number",
        -1.0,
        "`-1` on-demand, `0` spot at market price, `>0` maximum price per hour",
        stack_config="value",
    ),
    Argument(
        "image",
        "str",
        "ubuntu",
        "`ubuntu`, `nvidia`, or a native image id",
        stack_config="value",
    ),
    Argument(
        "parallelism",
        "int",
        1,
        "number of machines. Each one gets `TASK_INDEX` (0..N-1) and `TASK_COUNT`",
        stack_config="value",
    ),
    Argument(
        "timeout",
        "duration",
        DEFAULT_TIMEOUT,
        "the total budget across respawns, in seconds or as a duration like `2h30m`. "
        "When it runs out, the script is stopped and the task shows `timeout`",
        stack_config="value",
    ),
    Argument(
        "environment",
        "map",
        {},
        "variables for the script. An empty value takes the variable from the shell of "
        'whoever creates the task. Glob names (`"AWS_*": ""`) copy every matching '
        "variable. See [Team stacks](#team-stacks)",
        flag="--env",
    ),
    Argument(
        "secret_environment",
        "map",
        {},
        "like `environment`, but kept secret in Pulumi state and never written into "
        "machine user-data",
        secret=True,
        flag="--secret-env",
    ),
    Argument(
        "script",
        "text",
        REQUIRED,
        "what to run. It must start with a shebang. A plain command line gets `#!/bin/sh`",
    ),
    Argument(
        "storage.workdir",
        "str",
        "",
        "local folder uploaded at create and restored on every machine. A relative path "
        "is relative to the Pulumi project (or the task file)",
    ),
    Argument(
        "storage.output",
        "str",
        "",
        "path inside workdir that comes back on delete/`pull`",
        replaces=False,
    ),
    Argument(
        "storage.exclude",
        "list",
        [],
        "rclone-style patterns never uploaded "
        '(`"*.tmp"`, `".venv/"`, `"/top-only"`, `"**/cache/**"`)',
        replaces=False,
    ),
    Argument(
        "storage.container",
        "str",
        "",
        "an existing bucket (or `bucket/prefix`) to use instead of a new one. It is never deleted",
    ),
    Argument(
        "storage.container_opts",
        "map",
        {},
        "options for that container",
        flag="--container-opt",
    ),
    Argument(
        "storage.checkpoint_interval",
        "number",
        DEFAULT_CHECKPOINT_INTERVAL,
        "seconds between background checkpoints. `0` turns them off",
    ),
    Argument(
        "permission_set",
        "str",
        "",
        "the machine identity to use instead of a per-task one (AWS: an instance profile ARN; "
        "GCP: a service account email; Azure: a user-assigned managed identity resource id)",
        stack_config="value",
    ),
    Argument(
        "resource_group",
        "str",
        "",
        "**azure only**: an existing resource group to make the task's objects in (named "
        "and tagged from the task id), for a platform team that hands one out. It is never "
        "deleted; delete removes only what the task made",
        stack_config="value",
        default_doc="none (a resource group per task)",
    ),
    Argument("tags", "map", {}, "tags on every cloud object", stack_config="merge", flag="--tag"),
    Argument(
        "name",
        "str",
        "",
        "a readable prefix for the task id and cloud names",
        default_doc="the Pulumi resource's name (on the CLI, the task file's name)",
    ),
    Argument(
        "preempt_interval",
        "number",
        0.0,
        "**local cloud only**: seconds between rehearsed preemptions",
        stack_config="value",
        default_doc=f"`{render('number', DEFAULT_PREEMPT_INTERVAL)}` when `spot >= 0`",
    ),
    Argument(
        "preempt_notice",
        "number",
        DEFAULT_PREEMPT_NOTICE,
        "**local cloud only**: seconds of SIGTERM notice before the kill. `0` kills without notice",
        stack_config="value",
    ),
    Argument(
        "budget",
        "number",
        0.0,
        "the most the task may spend, across respawns, in its prices' currency. When the "
        "next check would pass it, the script is stopped and the task shows `budget`. "
        "See [What it costs](#what-it-costs)",
        stack_config="value",
        default_doc="`0` (no limit)",
    ),
    Argument(
        "notional_price",
        "number",
        0.0,
        "**local and k8s only**: a price per machine-hour, so a rehearsal shows what the "
        "run would cost (local) or a cluster's machines, which have no public price, "
        "are costed and a budget can be enforced (k8s)",
        stack_config="value",
    ),
    Argument(
        "namespace",
        "str",
        "",
        "**k8s only**: the namespace the task's objects go in (the context is `region`). "
        "It must exist",
        stack_config="value",
        default_doc="the context's namespace, else `default`",
    ),
)

BY_NAME: dict[str, Argument] = {a.name: a for a in ARGUMENTS}
# The top-level argument names, in declaration order ("storage" stands for its group).
FIELDS: tuple[str, ...] = tuple(dict.fromkeys(a.group for a in ARGUMENTS))
STORAGE_FIELDS: tuple[str, ...] = tuple(a.field for a in ARGUMENTS if a.group == "storage")
# Changes to these are applied to the running task; any other change replaces it.
UPDATABLE: frozenset[str] = frozenset(a.name for a in ARGUMENTS if not a.replaces)
SECRET: tuple[str, ...] = tuple(a.name for a in ARGUMENTS if a.secret)


def default(name: str) -> Any:
    """The declared default of an argument (a fresh copy for maps and lists)."""
    value = BY_NAME[name].default
    return type(value)(value) if isinstance(value, (dict, list)) else value


def markdown_table() -> str:
    """The README's argument table, rendered from the declaration."""
    rows = ["| argument | meaning | default |", "| --- | --- | --- |"]
    rows += [f"| `{a.name}` | {a.help} | {a.doc_default} |" for a in ARGUMENTS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
