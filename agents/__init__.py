"""The one agent registry: one file per agent with its ``get_config()``; the library (floq_jax) never imports this
package, the entrypoints in experiments/ hand it the classes and configs it needs.

``AGENTS`` maps ``config.agent_name`` to the class; ``CONFIGS`` maps the names the sweeps use (an agent, or an
agent's config variant such as 'fql_resnet') to the function giving its default config.
"""

import functools

from agents import floq, fql
from agents.floq import FloqAgent
from agents.fql import FQLAgent
from agents.fql_iqn import FQLIQNAgent

AGENTS = {'floq': FloqAgent, 'fql': FQLAgent, 'fql_resnet': FQLAgent, 'fql_iqn': FQLIQNAgent}
CONFIGS = {'floq': floq.get_config, 'fql': fql.get_config, 'fql_resnet': functools.partial(fql.get_config, 'resnet'),
           'fql_iqn': functools.partial(fql.get_config, 'iqn')}


def agent_class(agent_name: str):
    """The agent class for ``config.agent_name``, with a one-line error listing the accepted names."""
    if agent_name not in AGENTS:
        raise ValueError(f'unknown agent_name {agent_name!r}; accepted: {sorted(AGENTS)}')
    return AGENTS[agent_name]


def get_config(name: str):
    """The default config of ``name`` ('floq', 'fql', 'fql_resnet', 'fql_iqn'), one-line error for others."""
    if name not in CONFIGS:
        raise ValueError(f'unknown agent {name!r}; accepted: {", ".join(CONFIGS)}')
    return CONFIGS[name]()
