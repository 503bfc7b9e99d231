"""The layers' import rules, read from the source with ``ast``.

Every import statement counts, wherever it stands (a lazy import inside a
function is still a dependency). Relative imports are resolved; ``from a
import b`` counts as importing ``a.b`` where that is a module, else ``a``.
An import of one of a module's own parent packages is no edge (Python has
initialised them before the module runs).

* Nothing outside ``perceptlab/cli`` imports ``perceptlab.cli``.
* Nothing outside ``perceptlab/qt`` and ``perceptlab/cli`` imports ``perceptlab.qt``.
* No import cycle involves ``perceptlab.cli``; and no import cycle at all.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from pathlib import Path

import perceptlab

ROOT = Path(perceptlab.__file__).resolve().parent


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in ``root``: dotted name -> file (a package is its ``__init__.py``)."""
    out = {}
    for py in sorted(root.rglob("*.py")):
        parts = (package, *py.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = py
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` itself or its nearest enclosing module of the package (None: not the package's)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path, package: str = "perceptlab") -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _modules(root, package)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        here = name if _is_package(name, modules) else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_known(a.name, modules) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = here
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{source}" if source else base
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else _known(source, modules))
            for target in targets:
                if target is None or target == name or name.startswith(target + "."):
                    continue
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def cli_importers(edges) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts
                  if _inside(t, "perceptlab.cli") and not _inside(m, "perceptlab.cli"))


def qt_importers(edges) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts
                  if _inside(t, "perceptlab.qt") and not _inside(m, "perceptlab.qt", "perceptlab.cli"))


# -- the rules, on the real tree ---------------------------------------------


@functools.cache
def _tree_graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_nothing_outside_the_cli_package_imports_it():
    offenders = cli_importers(_tree_graph())
    assert not offenders, f"modules outside perceptlab/cli that import it: {offenders}"


def test_only_the_cli_and_qt_packages_import_qt():
    offenders = qt_importers(_tree_graph())
    assert not offenders, f"modules outside perceptlab/qt and perceptlab/cli that import perceptlab.qt: {offenders}"


def test_no_import_cycle_involves_the_cli():
    bad = [c for c in cycles(_tree_graph()) if any(_inside(m, "perceptlab.cli") for m in c)]
    assert not bad, f"import cycles through perceptlab.cli: {bad}"


def test_the_cli_is_a_package_of_command_modules():
    edges = _tree_graph()
    groups = {m for m in edges if m.startswith("perceptlab.cli.")}
    assert {"perceptlab.cli.common", "perceptlab.cli.__main__", "perceptlab.cli.listening",
            "perceptlab.cli.evaluate", "perceptlab.cli.probe"} <= groups
    assert "perceptlab.cli.common" in edges["perceptlab.cli.listening"]
    files = _modules(ROOT, "perceptlab")
    too_long = {m: n for m in groups if (n := len(files[m].read_text().splitlines())) > 600}
    assert not too_long, f"command modules over 600 lines: {too_long}"


def test_no_import_cycles():
    found = cycles(_tree_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


# -- the checker itself, on a small made-up package ---------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "perceptlab" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "perceptlab"


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "from perceptlab.cli import common\nfrom . import library\n",
        "cli/common.py": "import os\n",
        "cli/library.py": "from .common import os\n\ndef cmd():\n    from perceptlab.qt import app\n",
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from ..cli.common import os  # lazy and relative\n",
        "core/b.py": "from perceptlab.core import c\n",
        "core/c.py": "import perceptlab.core.b\nfrom perceptlab import qt\n",
        "qt/__init__.py": "",
        "qt/app.py": "from perceptlab.core import a\n",
    })
    edges = import_graph(pkg)
    assert edges["perceptlab.cli"] == {"perceptlab.cli.common", "perceptlab.cli.library"}
    assert edges["perceptlab.cli.library"] == {"perceptlab.cli.common", "perceptlab.qt.app"}
    assert edges["perceptlab.core.a"] == {"perceptlab.cli.common"}
    assert edges["perceptlab.core.c"] == {"perceptlab.core.b", "perceptlab.qt"}
    assert cli_importers(edges) == ["perceptlab.core.a -> perceptlab.cli.common"]
    assert qt_importers(edges) == ["perceptlab.core.c -> perceptlab.qt"]
    assert cycles(edges) == [["perceptlab.core.b", "perceptlab.core.c"]]


def test_the_checker_finds_a_cycle_through_the_cli(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "from perceptlab.core.a import f\n",
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from perceptlab.cli import main\n",
    })
    edges = import_graph(pkg)
    assert cycles(edges) == [["perceptlab.cli", "perceptlab.core.a"]]
    assert cli_importers(edges) == ["perceptlab.core.a -> perceptlab.cli"]
