"""Agents, one file each with its ``get_config()``.  ``AGENTS`` maps config.agent_name to the class."""

from agents.floq import FloqAgent
from agents.fql import FQLAgent
from agents.fql_iqn import FQLIQNAgent

AGENTS = {'floq': FloqAgent, 'fql': FQLAgent, 'fql_resnet': FQLAgent, 'fql_iqn': FQLIQNAgent}


def agent_class(agent_name: str):
    """The agent class for ``config.agent_name``, with a one-line error listing the accepted names."""
    if agent_name not in AGENTS:
        raise ValueError(f'unknown agent_name {agent_name!r}; accepted: {sorted(AGENTS)}')
    return AGENTS[agent_name]
