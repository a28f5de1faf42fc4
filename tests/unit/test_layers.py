"""The library's layers, read from its imports: data flows one way and nothing imports in a circle.

Each module's imports (including those under TYPE_CHECKING and inside functions) are read from
its source, resolved to fogify_net modules, and held against the layer order below. A lower layer
never imports a higher one; within the library no two modules import each other, directly or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fogify_net"

# From the bottom up; a module may import its own layer and those below it.
LAYERS = [
    {"errors", "machine", "model"},
    {"compile"},
    {"host", "render"},
    {"backends"},
    {"actions", "scenarios", "monitoring", "traces", "dryrun", "doctor", "record"},
    {"controller"},
    {"containernet"},
    {"cli"},
]
PURE = {"model", "compile"}  # read no files but the model: no os, subprocess, docker, mininet
IMPURE_IMPORTS = {"subprocess", "docker", "mininet", "socket", "requests"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, as written (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def top(name: str) -> str:
    """fogify_net.backends.local.manager -> backends; the package itself -> ''."""
    return name.split(".")[1] if name.count(".") else ""


def layer(name: str) -> int:
    if not top(name):
        return len(LAYERS)  # fogify_net/__init__.py: above everything
    for index, members in enumerate(LAYERS):
        if top(name) in members:
            return index
    raise AssertionError(f"{name} is in no layer: add {top(name)!r} to LAYERS")


def internal_edges() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        # `from . import backends` names the package root too; that is not an import of its __init__ code
        edges[name] = {target for target in imports(path) if target in known and target not in (name, "fogify_net")}
    return edges


def test_every_import_runs_down_the_layers() -> None:
    wrong = [f"{source} -> {target}" for source, targets in internal_edges().items() for target in targets
             if layer(target) > layer(source)]
    assert wrong == []


def test_the_backend_contract_imports_none_of_its_clients() -> None:
    clients = ("fogify_net.actions", "fogify_net.scenarios", "fogify_net.monitoring", "fogify_net.controller")
    base = internal_edges()["fogify_net.backends.base"]
    assert [target for target in base if target.startswith(clients)] == []


def test_the_pure_layers_touch_no_machine() -> None:
    for name, path in modules().items():
        if top(name) in PURE:
            roots = {target.split(".")[0] for target in imports(path)}
            assert not roots & IMPURE_IMPORTS, f"{name} imports {sorted(roots & IMPURE_IMPORTS)}"
            text = path.read_text()
            assert "/proc/" not in text and "/sys/" not in text, f"{name} reads the machine"


def test_no_module_imports_itself_through_others() -> None:
    edges = internal_edges()
    # Packages import their own modules from __init__; an edge into a package's __init__ from inside
    # the package would be the circle, so package -> its own children is not followed back.
    circles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in on_path:
                cycle = path[path.index(target):] + [target]
                if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(cycle, cycle[1:])):
                    circles.append(" -> ".join(cycle))
                continue
            if target not in done:
                on_path.add(target)
                visit(target, path + [target], on_path, done)
                on_path.discard(target)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], {start}, done)
    assert circles == []
