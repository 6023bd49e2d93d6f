"""The project's agents, registered in the one agent registry (floq_jax.agent_registry) exactly as a researcher's
own agent file is when ``--agent=path/to/file.py`` loads it.  The library (floq_jax) never imports this package.

agent_name -> file:variant: 'floq' -> agents/floq.py, 'fql' -> agents/fql.py, 'fql_resnet' -> agents/fql.py:resnet,
'fql_iqn' -> agents/fql.py:iqn (agents/fql_iqn.py is the same agent under its earlier spelling).
"""

from agents import floq, fql
from floq_jax import agent_registry

for _module in (floq, fql):
    agent_registry.register_module(_module)


def agent_class(agent_name: str):
    """The agent class registered under ``config.agent_name``, with a one-line error listing the accepted names."""
    return agent_registry.agent_class(agent_name)


def get_config(name: str):
    """The default config of a registered agent name ('floq', 'fql', 'fql_resnet', 'fql_iqn', or any name an agent
    file loaded in this process registered), or of an agent file 'path/to/file.py[:variant]' (loaded and
    registered); one-line error otherwise."""
    if name.endswith('.py') or '.py:' in name:
        return agent_registry.load_config(name)[1]
    try:
        return agent_registry.lookup(name).get_config()
    except agent_registry.AgentFileError:
        raise ValueError(f'unknown agent {name!r}; accepted: {", ".join(agent_registry.registered())} or the path '
                         f'of an agent file (path/to/agent.py[:variant])') from None


AGENTS = {name: entry.cls for name, entry in agent_registry.registered().items()}
