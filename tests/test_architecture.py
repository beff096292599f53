"""The layers of docs/architecture.md, kept true: a module that imports across a forbidden edge fails here.

Imports are read with ``ast`` (nothing is imported), wherever they stand in a module (a function-level
import still runs), except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cogs")
#: The entry point may start the Discord app, from inside the commands that need it (``run``, ``worker``, ``sync``).
ENTRY_POINT = ("bot.cli", "cogs.app")

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(nodes: list[ast.stmt], *, into_functions: bool) -> Iterator[ast.AST]:
    """Every statement that can run: ``if TYPE_CHECKING:`` bodies are left out (their ``else`` is kept);
    function bodies too unless ``into_functions`` (then only what runs when the module is imported)."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_nodes(node.orelse, into_functions=into_functions)
            continue
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not into_functions:
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, []):
                if isinstance(child, ast.stmt):
                    yield from _runtime_nodes([child], into_functions=into_functions)
                else:  # an except handler or a match case: a holder of statements
                    yield from _runtime_nodes(child.body, into_functions=into_functions)


def imported(path: Path, root: Path, modules: set[str], *, into_functions: bool = True) -> set[str]:
    """What ``path`` imports at run time: each a module of ours where one matches, else the dotted name."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in _runtime_nodes(tree.body, into_functions=into_functions):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from bot import sizes`` imports the module bot.sizes; ``from bot.jobs import Job`` the package.
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in modules else source)
    return found


def import_graph(root: Path, *, into_functions: bool = True) -> Graph:
    files = [path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))]
    modules = {module_name(path, root) for path in files}
    return {module_name(path, root): imported(path, root, modules, into_functions=into_functions) for path in files}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rule_broken(module: str, target: str) -> str | None:
    if _under(module, "bot") and (_under(target, "discord") or _under(target, "cogs")):
        if (module, target) == ENTRY_POINT:
            return None  # checked on its own: never at import time
        return "the core never imports discord or the cogs"
    if _under(module, "bot.providers") and any(
        _under(target, forbidden) for forbidden in ("bot.jobs", "bot.moderation", "bot.generation")
    ):
        return "providers know nothing of jobs, moderation or generation"
    # bot.i18n is a leaf like bot.errors: the words of the errors storage raises
    storage_may_use = _under(target, "bot.storage") or target == "bot.errors" or _under(target, "bot.i18n")
    if _under(module, "bot.storage") and _under(target, "bot") and not storage_may_use:
        return "storage imports nothing from bot but bot.errors and bot.i18n"
    if _under(module, "cogs") and (_under(target, "aiosqlite") or _under(target, "asyncpg")):
        return "the cogs never touch a database driver"
    return None


def crossings(graph: Graph) -> list[str]:
    """Every import that crosses a forbidden edge, as "importer -> imported (rule)"."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            rule = _rule_broken(module, target)
            if rule is not None:
                found.append(f"{module} -> {target} ({rule})")
    return found


def circles(graph: Graph) -> list[list[str]]:
    """The import circles among our modules: strongly connected components of more than one module.

    Only what the source says is an edge (not a module's implicit import of its parent package).
    """
    ours = {module: sorted(t for t in targets if t in graph and t != module) for module, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; a graph of ~70 modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in ours[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(ours):
        if module not in index:
            visit(module)
    return found


GRAPH = import_graph(ROOT)


def test_the_reader_sees_the_code() -> None:
    """The reader itself finds our modules and the imports that shape the layers."""
    assert {"bot.images", "bot.providers.base", "cogs.delivery", "bot.storage.database", "bot.cli"} <= GRAPH.keys()
    assert "discord" in GRAPH["cogs.delivery"]
    assert "bot.images" in GRAPH["bot.providers.base"]
    assert "bot.sizes" in GRAPH["bot.providers.base"]  # ``from bot import sizes`` is the module
    assert "bot.jobs" in GRAPH["bot.generation"]  # ``from bot.jobs import Job`` is the package
    assert "cogs.app" not in GRAPH["cogs.delivery"]  # only under ``if TYPE_CHECKING:``
    assert "cogs.app" in GRAPH["bot.cli"]  # inside a function: counted


def test_no_import_crosses_a_forbidden_edge() -> None:
    assert crossings(GRAPH) == []


def test_the_entry_point_loads_the_discord_app_only_when_a_command_needs_it() -> None:
    at_import = import_graph(ROOT, into_functions=False)["bot.cli"]
    assert not {target for target in at_import if _under(target, "cogs") or _under(target, "discord")}


def test_no_two_modules_import_each_other() -> None:
    assert circles(GRAPH) == []


def _graph_of(tmp_path: Path, files: dict[str, str]) -> Graph:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return import_graph(tmp_path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"bot/x.py": "import discord\n"}, "bot.x -> discord"),
        ({"bot/x.py": "def f():\n    from cogs import views\n", "cogs/views.py": ""}, "bot.x -> cogs.views"),
        ({"bot/x.py": "try:\n    pass\nexcept ImportError:\n    import discord.ext\n"}, "bot.x -> discord.ext"),
        ({"bot/cli.py": "from cogs.views import X\n", "cogs/views.py": ""}, "bot.cli -> cogs.views"),
        ({"bot/providers/p.py": "from bot.jobs.engine import JobEngine\n"}, "bot.providers.p -> bot.jobs.engine"),
        ({"bot/providers/p.py": "from .. import generation\n", "bot/generation.py": ""}, "bot.providers.p ->"),
        ({"bot/providers/p.py": "import bot.moderation.policy\n"}, "bot.providers.p -> bot.moderation.policy"),
        ({"bot/storage/s.py": "from bot.config import Settings\n"}, "bot.storage.s -> bot.config"),
        ({"cogs/c.py": "import aiosqlite\n"}, "cogs.c -> aiosqlite"),
        ({"cogs/c.py": "from asyncpg import Pool\n"}, "cogs.c -> asyncpg"),
    ],
)
def test_a_planted_crossing_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = crossings(_graph_of(tmp_path, files))
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_allowed_imports_are_not_crossings(tmp_path: Path) -> None:
    files = {
        "bot/storage/s.py": "from bot.errors import X\nfrom bot.storage import meta\n",
        "bot/storage/meta.py": "",
        "bot/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import discord\n",
        "bot/cli.py": "def run():\n    from cogs.app import run_bot\n",
        "cogs/app.py": "import discord\nfrom bot.jobs import Job\n",
    }
    assert crossings(_graph_of(tmp_path, files)) == []


def test_a_planted_circle_is_caught(tmp_path: Path) -> None:
    files = {
        "bot/a.py": "from bot.b import thing\n",
        "bot/b.py": "def later():\n    from bot import a\n",  # deferred to dodge the circle: still one
        "bot/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.a import x\n",
    }
    graph = _graph_of(tmp_path, files)
    assert circles(graph) == [["bot.a", "bot.b"]]
    graph["bot.b"].discard("bot.a")
    assert circles(graph) == []
