"""The lint configuration (pyproject.toml's [tool.ruff]) passes on the whole tree: ``ruff check .`` as CI runs it."""

import subprocess

from tests.conftest import REPO


def test_ruff_check_passes():
    from ruff.__main__ import find_ruff_bin  # ruff is pinned in requirements.txt

    out = subprocess.run([find_ruff_bin(), 'check', '--no-cache', '--output-format=concise', '.'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
