"""What the published code and floq-jax get when they run side by side (experiments/parity.py, the end-to-end
section of experiments/benchmark.py): the same agent config in each code's keys, the published per-task alpha, and
floq-jax's ``train_offline`` command line under the published protocol.  The published code's own command line is
``experiments.parity_harness.main_command``."""

from __future__ import annotations

import os
import sys
from typing import List, Sequence

from experiments import errors

# The agent config both codes get: the demo's small networks (2 x 128, batch 64; floq K = 4, 2 noise samples), in
# each code's config keys.  floq-jax's is the 'demo' scale of floq_jax.scaling (:func:`floq_jax_sizes`); the
# published code's keys differ for FQL (its critic MLP is sized by block_width / block_depth).
PUBLISHED_CONFIGS = {
    'floq': dict(batch_size=64, actor_hidden_dims=(128, 128), value_hidden_dims=(128, 128), block_width=128,
                 block_depth=2, critic_flow_steps=4, noise_samples=2),
    'fql': dict(batch_size=64, actor_hidden_dims=(128, 128), block_width=128, block_depth=2),
}
PARITY_SCALE = 'demo'
# The published alpha of both floq and FQL on these families (both papers' READMEs).
PUBLISHED_ALPHA = (('cube', 300.0), ('scene', 300.0), ('puzzle-3x3', 1000.0), ('puzzle-4x4', 1000.0))


def alpha_for(task: str) -> float:
    for prefix, alpha in PUBLISHED_ALPHA:
        if task.startswith(prefix):
            return alpha
    raise errors.UsageError(f'--tasks: {task} has no published alpha here; use one of the families '
                            f'{", ".join(p for p, _ in PUBLISHED_ALPHA)}')


def floq_jax_sizes(agent: str) -> dict:
    """floq-jax's sizes of ``agent`` side by side: the keys the :data:`PARITY_SCALE` scale changes in its defaults."""
    import agents
    from floq_jax.scaling import scaled_sizes

    return scaled_sizes(agents.get_config(agent), PARITY_SCALE)


def agent_overrides(agent: str, task: str, code: str) -> dict:
    """The agent config of ``code`` ('published' or 'floq-jax') for ``agent`` on ``task``."""
    sizes = PUBLISHED_CONFIGS[agent] if code == 'published' else floq_jax_sizes(agent)
    return {**sizes, 'alpha': alpha_for(task)}


def floq_jax_command(task: str, dataset_path: str, agent: str, num_seeds: int, steps: int, eval_interval: int,
                     eval_episodes: int, save_dir: str, run_group: str, save_interval: int | None = None,
                     extra: Sequence[str] = ()) -> List[str]:
    """``experiments.train_offline`` on ``dataset_path`` with :func:`agent_overrides` and the published protocol
    (one-step policy with N(0, I) noise, the reward range including 0), all seeds in one process."""
    from experiments import parity_harness

    return [sys.executable, '-m', 'experiments.train_offline', f'--env_name={task}', f'--dataset_path={dataset_path}',
            f'--agent=agents/{agent}.py', '--preset=none', f'--num_seeds={num_seeds}', '--seed=0',
            f'--offline_steps={steps}', f'--eval_interval={eval_interval}',
            f'--save_interval={save_interval or eval_interval}', f'--eval_episodes={eval_episodes}',
            '--log_interval=5000', '--noprogress', '--eval_protocol=published', '--reward_range=published',
            f'--save_dir={os.path.abspath(save_dir)}', f'--run_group={run_group}',
            *parity_harness.agent_flags(agent, agent_overrides(agent, task, 'floq-jax'))[1:], *extra]
