"""The README's library snippet runs as written."""

import pathlib
import re


def test_readme_library_snippet_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / 'README.md').read_text()
    section = text.split('## Library in a few lines', 1)[1]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    scope = {}
    exec(compile(code, 'README.md', 'exec'), scope)  # noqa: S102 - our own README
    assert set(scope['q']) == {1, 4, 8, 16}
    assert all(v.shape == (256,) for v in scope['q'].values())
    assert scope['a'].shape == (256, 2)
    assert float(scope['info']['critic/critic_loss']) > 0
