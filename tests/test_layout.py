"""The layering rules: the library (floq_jax/) never imports the layer above it (agents/, experiments/, tests/)."""

import ast
import os
from tests.conftest import REPO

UPPER = ('agents', 'experiments', 'tests')


def imported_modules(path):
    """Top-level names of every module a file imports (absolute imports, at any depth of the file)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split('.')[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split('.')[0], node.lineno


def test_library_never_imports_agents_experiments_or_tests():
    offenders, files = [], 0
    for root, _, names in os.walk(os.path.join(REPO, 'floq_jax')):
        for name in sorted(names):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                files += 1
                offenders += [f'{os.path.relpath(path, REPO)}:{line} imports {mod}'
                              for mod, line in imported_modules(path) if mod in UPPER]
    assert files > 30  # the walk found the package
    assert not offenders, offenders


def test_the_checker_sees_lazy_imports(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('def f():\n    from agents import agent_class\n    import experiments.common\n')
    assert [m for m, _ in imported_modules(str(path))] == ['agents', 'experiments']


def agent_name_constants(path, names):
    """(line, value) of every string constant in a file that equals an agent name (docstrings aside)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in docstrings]


def test_library_names_no_agent():
    """The library serves any agent file (floq_jax.agent_registry): no string constant in floq_jax/ names an agent."""
    import agents
    from floq_jax import agent_registry

    assert agents.agent_class('floq')  # the project's agents are registered

    names = {'floq', 'fql', 'fql_iqn', 'fql_resnet', *agent_registry.registered()}
    offenders = []
    for root, _, files in os.walk(os.path.join(REPO, 'floq_jax')):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(root, name)
                offenders += [f'{os.path.relpath(path, REPO)}:{line} {value!r}'
                              for line, value in agent_name_constants(path, names)]
    assert not offenders, offenders


def test_the_agent_name_checker_sees_constants_not_docstrings(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('"""floq"""\ndef f(a=\'fql\'):\n    """fql_iqn"""\n    return {\'fql_resnet\': 1, \'floqs\': 2}\n')
    assert agent_name_constants(str(path), {'floq', 'fql', 'fql_iqn', 'fql_resnet'}) == [(2, 'fql'), (4, 'fql_resnet')]
