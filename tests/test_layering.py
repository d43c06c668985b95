"""The layers of ``ddetr_plugin`` point one way (the order is stated in
``ddetr_plugin/__init__.py``): every import of a module of the package,
also the ones inside functions, goes to its own subpackage or to one below
it, and no group of modules imports itself round in a circle.

The import graph is read from the source (``ast``), nothing is imported.
Run as a script (``python tests/test_layering.py``) it prints every cycle
and every edge against the order, and exits with status 1 if there is any.
"""
import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = 'ddetr_plugin'
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
#: compiled modules of the package (``setup.py``'s extension)
EXTENSIONS = {f'{PACKAGE}._C'}
#: bottom to top: a module may import its own layer and the ones before it.
#: The package root (``ddetr_plugin/__init__.py``) sits above them all.
LAYERS = (
    ('_C', 'version', 'registry', 'utils'),
    ('ops', ),
    ('converters', ),
    ('models', ),
    ('datasets', ),
    ('evaluation', ),
    ('visualization', ),
    ('engine', ),
    ('deployment', ),
    ('apis', ),
)
#: ``(module, line, imported module)`` of one import
Edge = Tuple[str, int, str]


def _modules() -> Dict[str, Path]:
    """Dotted name -> file of every Python module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob('*.py')):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        modules['.'.join(parts)] = path
    return modules


def _resolve(base: str, name: str, known: Set[str]) -> str:
    """``base.name`` if that is a module of ours, else ``base``."""
    full = f'{base}.{name}' if base else name
    return full if full in known else base


def module_edges(module: str, source: str, is_package: bool,
                 known: Set[str]) -> List[Edge]:
    """The imports of package modules in one module's ``source``, at module
    level or inside a function, as ``(module, line, imported)``."""
    package = module if is_package else module.rpartition('.')[0]
    edges = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [_resolve(base, alias.name, known)
                       for alias in node.names]
        edges += [(module, node.lineno, target) for target in targets
                  if target.split('.')[0] == PACKAGE and target != module]
    return edges


def import_edges() -> List[Edge]:
    """Every import of a package module by a package module (see
    :func:`module_edges`)."""
    modules = _modules()
    known = set(modules) | EXTENSIONS
    return [edge for module, path in modules.items()
            for edge in module_edges(module, path.read_text(),
                                     path.name == '__init__.py', known)]


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module``'s subpackage; the package root
    is above every layer.

    Raises:
        KeyError: a subpackage that :data:`LAYERS` does not place.
    """
    parts = module.split('.')
    if len(parts) == 1:
        return len(LAYERS)
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise KeyError(f'{module}: subpackage {parts[1]!r} is in no layer of '
                   'tests/test_layering.py (add it where it belongs)')


def upward_edges(edges: List[Edge]) -> List[Edge]:
    """The edges that import a higher layer."""
    return [edge for edge in edges if layer_of(edge[2]) > layer_of(edge[0])]


def cycles(edges: List[Edge]) -> List[List[str]]:
    """Groups of modules that import each other round in a circle (the
    strongly connected components of more than one module), sorted."""
    graph: Dict[str, Set[str]] = {}
    for source, _, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_subpackage_has_a_layer():
    for module in _modules():
        layer_of(module)


def test_imports_point_down():
    upward = upward_edges(import_edges())
    assert not upward, 'imports of a higher layer:\n' + '\n'.join(
        f'{source}:{line} imports {target}' for source, line, target
        in upward)


def test_no_import_cycle():
    found = cycles(import_edges())
    assert not found, 'import cycles:\n' + '\n'.join(
        ' <-> '.join(component) for component in found)


def test_the_checks_see_what_they_look_for():
    """The graph holds relative imports and imports inside functions, and
    the checks flag models -> engine, ops -> converters, converters ->
    engine and a cycle."""
    source = ('from ..engine import hooks\n'
              'def f():\n'
              '    from ddetr_plugin.engine.checkpoint import x\n')
    known = {'ddetr_plugin.engine', 'ddetr_plugin.engine.hooks',
             'ddetr_plugin.engine.checkpoint'}
    edges = module_edges('ddetr_plugin.models.x', source, False, known)
    assert edges == [
        ('ddetr_plugin.models.x', 1, 'ddetr_plugin.engine.hooks'),
        ('ddetr_plugin.models.x', 3, 'ddetr_plugin.engine.checkpoint')]
    assert upward_edges(edges) == edges
    assert upward_edges([('ddetr_plugin.ops.x', 1,
                          'ddetr_plugin.converters.y')])
    assert upward_edges([('ddetr_plugin.converters.x', 1,
                          'ddetr_plugin.engine.y')])
    assert not upward_edges([('ddetr_plugin.engine.x', 1,
                              'ddetr_plugin.converters.y')])
    assert cycles([('a.x', 1, 'a.y'), ('a.y', 2, 'a.x'),
                   ('a.y', 3, 'a.z')]) == [['a.x', 'a.y']]


if __name__ == '__main__':
    all_edges = import_edges()
    problems = [f'{s}:{n} imports {t} (a higher layer)'
                for s, n, t in upward_edges(all_edges)]
    problems += ['cycle: ' + ' <-> '.join(c) for c in cycles(all_edges)]
    print(f'{len(all_edges)} imports between modules of {PACKAGE}')
    print('\n'.join(problems) or 'no cycle, every import points down')
    sys.exit(1 if problems else 0)
