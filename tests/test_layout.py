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
