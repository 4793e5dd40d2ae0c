"""The house as docs/architecture.md draws it: every import of ours goes down the layers, none goes up,
and no two modules import each other (directly or round a circle), counting imports inside functions.

A new module belongs to the layer of the longest prefix in LAYERS that names it; a module no entry
names fails the test, so a new package has to be placed in the drawing first.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.paths import REPO_ROOT

# (rank, group, module prefixes), from the bottom up. An import must go to a lower rank or stay in its
# own group; groups of one rank are peers and never import each other.
LAYERS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "foundation", ("studio", "studio.errors", "studio.config", "studio.tomlfile")),
    (1, "content", ("metadata",)),
    (2, "chain", ("contracts",)),
    (2, "generation", ("studio.generation",)),
    (2, "storage", ("studio.db", "studio.records", "studio.owners", "studio.crashpoints", "studio.migrations")),
    (3, "rules", ("studio.rules",)),
    (3, "collection specs", ("studio.collections",)),
    (3, "verifier", ("metadata.verify", "metadata.replay")),
    (4, "services", ("studio.services",)),
    (5, "evolution", ("evolve",)),
    (6, "ui", ("studio.ui", "app")),
]
# Command-line entry points sit on top of everything, whatever package holds them.
ENTRY_POINT_RANK = 7
PACKAGES = ("studio", "contracts", "metadata", "evolve")


def our_modules() -> dict[str, Path]:
    modules = {"app": REPO_ROOT / "app.py"}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if "versions" in relative.parts:  # Alembic revisions: run by Alembic, import nothing of ours
                continue
            name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere (top level or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def layer_of(module: str) -> tuple[int, str]:
    if module.endswith("__main__"):
        return ENTRY_POINT_RANK, "entry points"
    best: tuple[int, int, str] | None = None
    for rank, group, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, group)
    assert best is not None, f"{module} is in no layer: place it in LAYERS and in docs/architecture.md"
    return best[1], best[2]


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for importer, imported in sorted(graph.items()):
        rank, group = layer_of(importer)
        for target in sorted(imported):
            target_rank, target_group = layer_of(target)
            if target_group != group and target_rank >= rank:
                found.append(f"{importer} ({group}) imports {target} ({target_group})")
    return found


def test_every_import_goes_down_the_layers() -> None:
    upward = upward_imports(import_graph())
    assert upward == [], "imports against the layers of docs/architecture.md:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    graph = import_graph()
    circles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert circles == [], f"modules that import one another round a circle: {circles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (the graph is small, but recursion depth is not ours to spend)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_the_layer_check_sees_an_upward_import_and_a_circle() -> None:
    """The checks themselves: made-up upward and peer imports and a made-up circle are found."""
    graph = {
        "contracts.client": {"studio.services.minting", "metadata.cid"},  # up, down
        "studio.generation.engine": {"contracts.client"},  # a peer
        "evolve.__main__": {"studio.ui.server"},  # an entry point may import anything
    }
    assert upward_imports(graph) == [
        "contracts.client (chain) imports studio.services.minting (services)",
        "studio.generation.engine (generation) imports contracts.client (chain)",
    ]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"], ["d"]]


def test_tests_import_helpers_only_from_tests_fixtures() -> None:
    """One fixture per thing, in tests/fixtures/: a test module never imports another test or a conftest."""
    wrong = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("tests.") and not module.startswith("tests.fixtures."):
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert wrong == [], "move what these import into tests/fixtures/:\n" + "\n".join(wrong)
