"""Imports run one way: the layers contract in pyproject.toml holds, and no modules import in a circle.

Both checks read the source (grimp parses every import, function-level ones included), so a lazy
``import`` inside a function counts as much as one at the top. Each check is also run on a copy of
the package with one wrong import added, to show it fails when the code is wrong.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def circles(package: str) -> list[list[str]]:
    """The strongly connected components of more than one module in ``package``'s import graph (Tarjan)."""
    graph = grimp.build_graph(package, cache_dir=None)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:  # iterative, so a deep graph cannot hit the recursion limit
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with ``project``'s pyproject.toml, importing ``retention`` from ``project``."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(project / "pyproject.toml"), "--no-cache"],
                          cwd=project, capture_output=True, text=True, env={"PYTHONPATH": str(project),
                                                                            "PATH": str(LINT_IMPORTS.parent)})


@pytest.fixture
def package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of ``retention`` and pyproject.toml in ``tmp_path``, importable as ``retention``."""
    shutil.copytree(ROOT / "retention", tmp_path / "retention", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "retention" or m.startswith("retention.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def add_lazy_import(module_file: Path, statement: str) -> None:
    """Append a function whose body imports ``statement``: never run, but an import all the same."""
    module_file.write_text(module_file.read_text() + f"\n\ndef _added_by_test():\n    {statement}\n")


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_no_module_imports_in_a_circle():
    assert circles("retention") == []


def test_a_part_importing_the_pipeline_breaks_the_contract(package_copy: Path):
    add_lazy_import(package_copy / "retention" / "data" / "io.py", "from retention.pipeline import main  # noqa")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "retention.data.io -> retention.pipeline" in result.stdout


def test_plumbing_importing_a_part_breaks_the_contract(package_copy: Path):
    add_lazy_import(package_copy / "retention" / "tracking.py", "import retention.serving.ledger  # noqa")
    result = lint_imports(package_copy)
    assert result.returncode != 0 and "retention.tracking -> retention.serving.ledger" in result.stdout


def test_a_circle_inside_a_part_is_found(package_copy: Path):
    add_lazy_import(package_copy / "retention" / "serving" / "tables.py", "import retention.serving.ledger  # noqa")
    assert ["retention.serving.ledger", "retention.serving.tables"] in circles("retention")
