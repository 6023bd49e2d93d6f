"""FQL-IQN under its earlier spelling: ``--agent=agents/fql_iqn.py`` is ``--agent=agents/fql.py:iqn`` (FQL with the
quantile critic component, :class:`agents.fql.QuantileCritic`; ``agent_name='fql_iqn'``).  Kept so command lines
and scripts written before the critic became a component of FQL still run; the registry lists the agent once, as
agents/fql.py's 'iqn' variant.  The network and loss live in floq_jax/core/quantile.py.
"""

from agents import fql
from floq_jax.core.quantile import (IQN_LOSSES, ImplicitQuantileCritic, cosine_embedding, quantile_loss,
                                    quantile_midpoints)

__all__ = ['AGENT', 'FQLIQNAgent', 'CONFIG_RANGES', 'get_config', 'IQN_LOSSES', 'ImplicitQuantileCritic',
           'cosine_embedding', 'quantile_loss', 'quantile_midpoints']  # re-exported for older imports

AGENT = FQLIQNAgent = fql.FQLAgent
CONFIG_RANGES = fql.CONFIG_RANGES


def get_config():
    """FQL's defaults with the published fql_iqn's critic settings (= agents/fql.py:iqn)."""
    return fql.get_config('iqn')
