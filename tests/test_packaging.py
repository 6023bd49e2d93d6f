"""The install extras for accelerators: each one names jax's own extra at the jax version requirements.txt pins."""

import configparser
import os
import re
from tests.conftest import REPO



def _pinned_jax():
    with open(os.path.join(REPO, 'requirements.txt')) as f:
        pins = [m.group(1) for m in (re.match(r'^jax==(\S+)', line.strip()) for line in f) if m]
    assert len(pins) == 1, pins
    return pins[0]


def test_accelerator_extras_pin_the_tested_jax():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, 'setup.cfg'))
    extras = {k: [r for r in v.split('\n') if r.strip()] for k, v in cfg['options.extras_require'].items()}
    version = _pinned_jax()
    for name in ('cuda12', 'cuda13', 'tpu'):
        assert extras.get(name) == [f'jax[{name}]=={version}'], (name, extras.get(name))


def test_readme_names_the_extras():
    with open(os.path.join(REPO, 'README.md')) as f:
        readme = f.read()
    for name in ('cuda12', 'cuda13', 'tpu'):
        assert f'.[{name}]' in readme, name
