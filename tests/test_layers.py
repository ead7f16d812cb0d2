"""The package's structure holds: import-linter's contracts (pyproject.toml) are kept, and no module imports
itself round a cycle, counting imports made inside functions."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import grimp
import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout, done.stdout[-3000:]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over every import grimp saw."""
    modules = sorted(m for m in graph.modules if not m.startswith("seedcore._migrations"))
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_cycle():
    graph = grimp.build_graph("seedcore", exclude_type_checking_imports=True)
    # a package's __init__ that re-exports its own modules is not a cycle between modules
    for package in ("seedcore", "seedcore.tuning", "seedcore.memory", "seedcore.db", "seedcore.api"):
        for module in list(graph.find_modules_directly_imported_by(package)):
            graph.remove_import(importer=package, imported=module)
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_made_inside_a_function():
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")  # as `def f(): from a import b` would
    assert _cycles(graph) == [["a.b", "a.c"]]


def _deferred_imports() -> list[tuple[str, str]]:
    """(importer, imported) for each import of a seedcore module made inside a function."""
    found = []
    package = ROOT / "platform"
    for path in sorted((package / "seedcore").rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if "_migrations" in parts:
            continue
        importer = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and not inner.level and (inner.module or "").startswith("seedcore"):
                    found += [(importer, _module(package, inner.module, alias.name)) for alias in inner.names]
                elif isinstance(inner, ast.Import):
                    found += [(importer, alias.name) for alias in inner.names if alias.name.startswith("seedcore")]
    return sorted(set(found))


def _module(package: Path, module: str, name: str) -> str:
    """`module.name` when `from module import name` imports a submodule, else `module`."""
    place = package.joinpath(*module.split("."), name)
    return f"{module}.{name}" if place.with_suffix(".py").exists() or place.is_dir() else module


def _reason(rules: list[dict], importer: str, imported: str) -> str | None:
    for rule in rules:
        if any(fnmatch(importer, p) for p in rule["importers"]) and any(fnmatch(imported, p) for p in rule["imported"]):
            return rule["reason"]
    return None


def test_every_import_made_inside_a_function_is_listed_with_its_reason():
    rules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["seedcore"]["deferred-imports"]
    assert all(rule["reason"].strip() for rule in rules)
    found = _deferred_imports()
    assert len(found) > 10  # the scan sees them (e.g. the command line's)
    unlisted = [f"{importer} -> {imported}" for importer, imported in found if _reason(rules, importer, imported) is None]
    assert unlisted == [], "import these at the top of the module, or add a rule with its reason to pyproject.toml"
    unused = [rule["reason"] for rule in rules if not any(_reason([rule], *pair) for pair in found)]
    assert unused == []


def test_the_readme_layout_names_every_part_and_only_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Benchmarks")]
    package = ROOT / "platform" / "seedcore"
    named = set(re.findall(r"`([\w/]+(?:\.py|/))`", layout))
    missing = sorted(n for n in named if not (package / n).exists() and not (ROOT / n).exists()
                     and not any((package / part / n).exists() for part in _parts(package)))
    assert missing == []
    unnamed = [part for part in _parts(package) if f"`{part}/`" not in layout]
    assert unnamed == []


def _parts(package: Path) -> list[str]:
    return sorted(p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                  and not p.name.startswith("_"))


MAX_MODULE_LINES = 300  # a module longer than this is split along its seams


def test_no_module_of_the_platform_is_over_the_line_limit():
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "platform" / "seedcore").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, long
