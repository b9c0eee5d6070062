"""The package's layout holds: subpackages import only the ones below them, no module imports
itself back through another, and the training child stays free of the worker's heavy libraries.

Built from the source with `ast`, imports inside functions included, so a lazy import cannot hide
an arrow that points up or closes a circle.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "sweeper"
LAYERS = ["cli", "reporting", "fleet", "artifacts", "training", "storage", "studyfile"]
"""Top to bottom: a subpackage imports only those after it, and the top-level modules (errors, ...)."""
CHILD_ENTRY = "sweeper.training.trainer_process"
"""Where the training child starts: its target imports `trainer`, which imports the rest."""
NOT_IN_THE_CHILD = ("optuna", "pydantic", "plotly")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every module `name` imports, sweeper's and third parties' (top-level name), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from sweeper.fleet import events` imports a module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return found


GRAPH = {name: {m for m in _imports(name) if m in MODULES} for name in MODULES}


def test_every_import_of_sweeper_names_a_module_that_exists() -> None:
    """Else a stale path after a move would import nothing here and fail only where it runs."""
    missing = {
        f"{name} imports {module}"
        for name in MODULES
        for module in _imports(name)
        if module.split(".")[0] == "sweeper" and module not in MODULES
    }
    assert not missing, sorted(missing)


def _layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else len(LAYERS)


def test_subpackages_import_only_those_below_them() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if _layer(target) < _layer(name) and name not in ("sweeper", "sweeper.__main__")
    ]
    assert not upward, f"imports that point up the layers {LAYERS}: {upward}"


def test_no_module_imports_itself_back() -> None:
    circles = []
    for start in GRAPH:
        stack, seen = [(start, [start])], set()
        while stack:
            name, path = stack.pop()
            for target in GRAPH[name]:
                if target == start:
                    circles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not circles, f"import circles: {sorted(set(circles))[:5]}"


def _reachable(start: str) -> set[str]:
    reached, stack = {start}, [start]
    while stack:
        for target in GRAPH[stack.pop()]:
            if target not in reached:
                reached.add(target)
                stack.append(target)
    return reached


def test_the_training_child_imports_no_optuna_pydantic_or_plotly() -> None:
    child = _reachable(CHILD_ENTRY)
    child |= {name.rsplit(".", i)[0] for name in child for i in range(1, name.count(".") + 1)}  # parent packages
    heavy = {
        f"{name} imports {module}"
        for name in child
        for module in _imports(name)
        if module.split(".")[0] in NOT_IN_THE_CHILD
    }
    assert not heavy, f"the training child loads what only the worker needs: {sorted(heavy)}"
    assert {"sweeper.training.model", "sweeper.training.user_code", "sweeper.training.prepared"} <= child


def test_the_graph_sees_function_level_imports() -> None:
    """A check of the checker: the child's lazy imports of the trainer and of user_code are arrows."""
    assert "sweeper.training.trainer" in GRAPH[CHILD_ENTRY]
    assert "sweeper.training.user_code" in GRAPH["sweeper.training.trainer"]


def _declared() -> set[str]:
    """The distributions pyproject.toml names: dependencies and every extra (backends are extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    return {_canonical(re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0]) for requirement in requirements}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_sweeper_imports_is_declared() -> None:
    """An undeclared import works here only because something else pulled it in."""
    distributions = importlib.metadata.packages_distributions()
    imported = (
        {m.split(".")[0] for name in MODULES for m in _imports(name)} - set(sys.stdlib_module_names) - {"sweeper"}
    )
    declared = _declared()
    undeclared = {top for top in imported if not {_canonical(d) for d in distributions.get(top, [top])} & declared}
    assert not undeclared, f"imported by sweeper/ but not declared in pyproject.toml: {sorted(undeclared)}"
