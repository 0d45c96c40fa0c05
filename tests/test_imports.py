"""The modules of cpl import each other without a cycle: read from the
source with ast, every import counts, at the top of a module or inside a
function (a function-level import is no way around a cycle)."""
from __future__ import annotations

import ast
import os

import pytest

import cpl

PACKAGE_DIR = os.path.dirname(cpl.__file__)


def module_files() -> dict[str, str]:
    """Dotted name -> source file of every module of cpl."""
    files = {}
    for folder, _dirs, names in os.walk(PACKAGE_DIR):
        for name in names:
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[
                :-len('.py')].split(os.sep)
            if parts[-1] == '__init__':
                parts.pop()
            files['.'.join(parts)] = path
    return files


def imported_modules(module: str, path: str, known: set[str]) -> set[str]:
    """The modules of cpl that module imports anywhere in its source.
    ``from X import name`` counts as importing X.name where that is a
    module, else X; a module's package is not counted (Python imports it
    first anyway, and a package imports its own modules)."""
    is_package = path.endswith('__init__.py')
    package = module if is_package else module.rpartition('.')[0]
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [base + '.' + alias.name
                       if base + '.' + alias.name in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imported_modules(module, path, set(files))
            for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of graph (its modules, the first again at the end), or
    None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        if state.get(module) == 'done':
            return None
        if state.get(module) == 'visiting':
            return path[path.index(module):] + [module]
        state[module] = 'visiting'
        for target in sorted(graph[module]):
            cycle = visit(target, path + [module])
            if cycle:
                return cycle
        state[module] = 'done'
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    # top level, relative from the package (cpl/__init__.py)
    assert 'cpl.recipe' in graph['cpl']
    # relative from a sub-package, two levels up
    assert 'cpl.recipe' in graph['cpl.parallel._task']
    # a module named in 'from package import module'
    assert 'cpl.parallel._execution' in graph['cpl.parallel._workflow']
    # function-level: the live display, imported only when one is drawn
    assert 'cpl.parallel._display' in graph['cpl.parallel._execution']
    # absolute: 'import cpl' in cpl.synthetic
    assert 'cpl' in graph['cpl.synthetic']


@pytest.mark.parametrize('graph, cycle', [
    ({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}, ['a', 'b', 'c', 'a']),
    ({'a': {'b'}, 'b': set(), 'c': {'c'}}, ['c', 'c']),
    ({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}, None),
])
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_cpl_modules_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)
