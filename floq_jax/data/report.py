"""Per-task success report for a dataset file: dataset episodes that reach each single-task goal, and the oracle's
own success rate on the single-task env (a ceiling / sanity check)."""
import numpy as np

from floq_jax.data.names import parse_name

NUM_TASKS = 5


def episode_bounds(terminals):
    """[(start, end)) row ranges of the episodes in a raw file, from terminals [N]."""
    ends = np.flatnonzero(np.asarray(terminals) > 0) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts, ends))


def dataset_success(dataset_name, path, tasks=range(1, NUM_TASKS + 1)):
    """{task: fraction of episodes in the train file with a relabelled success (mask == 0) somewhere}."""
    import ogbench
    from ogbench.relabel_utils import relabel_dataset
    from ogbench.utils import load_dataset

    p = parse_name(dataset_name)
    raw = load_dataset(path, add_info=True, compact_dataset=True)  # compact keeps every row (and episode layout)
    bounds = episode_bounds(np.load(path)['terminals'])
    out = {}
    for task in tasks:
        env = ogbench.make_env_and_datasets(p.single_task_name(task), env_only=True)
        ds = {k: raw[k] for k in ('qpos', 'qvel', 'button_states') if k in raw}
        relabel_dataset(p.single_task_env_name(task), env, ds)
        succ = ds['masks'] == 0
        out[task] = float(np.mean([succ[s:e].any() for s, e in bounds]))
        env.close()
    return out


def _cube_task_info(env, info):
    """Add the privileged target keys the cube oracle reads (only present in data-collection mode) for cube 0."""
    from ogbench.manipspace import lie

    u = env.unwrapped
    mocap = u._cube_target_mocap_ids[0]
    info = dict(info)
    info['privileged/target_block'] = 0
    info['privileged/target_block_pos'] = u._data.mocap_pos[mocap].copy()
    info['privileged/target_block_yaw'] = np.array([lie.SO3(wxyz=u._data.mocap_quat[mocap]).compute_yaw_radians()])
    return info


def oracle_success(dataset_name, task, num_episodes=3, seed=0):
    """Success rate of the noise-free oracle driven on the single-task env, or None where no oracle fits the task.

    Implemented for pointmaze (BFS-subgoal point agent) and cube-single (the Markov cube oracle).
    """
    import ogbench

    p = parse_name(dataset_name)
    if p.family != 'pointmaze' and p.env_prefix != 'cube-single':
        return None
    from floq_jax.data.generate import point_action

    env = ogbench.make_env_and_datasets(p.single_task_name(task), env_only=True)
    successes = []
    for ep in range(num_episodes):
        np.random.seed(seed + ep)
        ob, info = env.reset(seed=seed + ep)
        if p.family == 'cube':
            from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

            agent = CubeMarkovOracle(env=env)
            agent.reset(ob, info)
        done, success = False, False
        while not done:
            if p.family == 'pointmaze':
                action = point_action(env, env.unwrapped.cur_goal_xy)
            else:
                action = np.clip(agent.select_action(ob, _cube_task_info(env, info)), -1, 1)
            ob, _, terminated, truncated, info = env.step(action)
            success = success or bool(info['success'])
            done = terminated or truncated
        successes.append(success)
    env.close()
    return float(np.mean(successes))
