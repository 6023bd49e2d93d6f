"""Generate OGBench-format datasets with OGBench's scripted oracles (manipulation) or a BFS-subgoal point agent (pointmaze).

Follows how OGBench collected its data: 'play' = non-Markovian plan oracles with smoothed plan noise, 'noisy' =
Markov oracles with per-episode Gaussian action noise plus random actions; episodes of 1001 steps (201 for pointmaze
'stitch'); a new random subtask/goal whenever the current one is done; validation = num_episodes // 10 extra episodes.

Raw arrays per file (N rows = total steps): observations [N, obs_dim] float32 (visual-*: [N, 64, 64, 3] uint8 frames),
actions [N, act_dim] float32, terminals [N] bool (True on each episode's last row), qpos [N, nq] float32,
qvel [N, nv] float32, button_states [N, B] int64 (puzzle/scene only).

Visual datasets are made as OGBench made its own (data_gen_scripts/commands.sh runs generate_manipspace.py with
``--env_name=visual-cube-single-v0`` etc.): the same oracles drive OGBench's visual env, whose every observation is a
frame MuJoCo renders offscreen (camera 'front_pixels', 64x64, the arm drawn transparent); qpos/qvel/button_states are
stored as in the state datasets, so OGBench's relabelling works unchanged.

Every episode is seeded on its own (``episode_seed(seed, index)``), so output does not depend on the worker count.
"""
import collections
import dataclasses
import json
import multiprocessing
import os
import sys

import numpy as np

from floq_jax.data.errors import DatasetError
from floq_jax.data.names import FAMILIES, VISUAL_PREFIX, parse_name

MARKER_KEY = 'floq_generator'  # key of the generator record (a JSON string) inside every generated .npz
GENERATOR_VERSION = 2  # 2: pointmaze start/goal rules exactly as OGBench's generate_locomaze.py
GENERATABLE = ('cube-single', 'cube-double', 'scene', 'puzzle-3x3', 'puzzle-4x4',
               'pointmaze-medium', 'pointmaze-large', 'pointmaze-giant', 'pointmaze-teleport')
VISUAL_GENERATABLE = ('cube-single', 'cube-double', 'scene', 'puzzle-3x3', 'puzzle-4x4')  # as 'visual-<prefix>'
NEEDS_EXPERTS = ('antmaze', 'humanoidmaze', 'antsoccer')


@dataclasses.dataclass(frozen=True)
class GenConfig:
    """How one dataset type is generated (recorded in the sidecar JSON)."""

    dataset_name: str
    env_name: str
    family: str
    dataset_type: str
    method: str
    max_episode_steps: int
    noise: float
    noise_smoothing: float = 0.0
    p_random_action: float = 0.0
    min_norm: float = 0.4
    visual: bool = False  # OGBench's pixel env: observations are uint8 frames rendered at every step


def generation_config(dataset_name, max_episode_steps=None):
    """GenConfig for a dataset-type name like 'cube-single-play-v0'; DatasetError if it cannot be generated here."""
    p = parse_name(dataset_name)
    if p.single_task:
        raise DatasetError(f'{dataset_name!r}: give the dataset name without -singletask (e.g. {p.dataset_name!r})')
    if p.family in NEEDS_EXPERTS:
        raise DatasetError(
            f'{dataset_name!r} cannot be generated here: {p.family} data needs OGBench\'s trained expert policies '
            f'(not in the pip package); copy OGBench\'s {p.dataset_name}.npz files into --dataset_dir instead'
        )
    if p.visual and p.state_name.env_prefix not in VISUAL_GENERATABLE:
        raise DatasetError(f'{dataset_name!r} cannot be generated: supported pixel environments are '
                           f'{", ".join(VISUAL_PREFIX + e for e in VISUAL_GENERATABLE)}')
    if p.state_name.env_prefix not in GENERATABLE:
        raise DatasetError(f'{dataset_name!r} cannot be generated: supported environments are {", ".join(GENERATABLE)}')
    if p.family == 'pointmaze':
        if p.dataset_type not in ('navigate', 'stitch'):
            raise DatasetError(f"{dataset_name!r}: pointmaze dataset type must be 'navigate' or 'stitch'")
        steps = 1001 if p.dataset_type == 'navigate' else 201
        if p.env_prefix == 'pointmaze-giant' and p.dataset_type == 'navigate':
            steps = 2001
        cfg = GenConfig(p.dataset_name, p.env_name, p.family, p.dataset_type, 'pointmaze_bfs_subgoal', steps, 0.5)
    else:
        if p.dataset_type not in ('play', 'noisy'):
            raise DatasetError(f"{dataset_name!r}: manipulation dataset type must be 'play' or 'noisy'")
        if p.dataset_type == 'play':
            cfg = GenConfig(p.dataset_name, p.env_name, p.family, 'play', 'plan_oracle', 1001, 0.1, 0.5, 0.0)
        else:
            p_rand = 0.2 if p.family == 'puzzle' else 0.1
            cfg = GenConfig(p.dataset_name, p.env_name, p.family, 'noisy', 'markov_oracle', 1001, 0.1, 0.0, p_rand)
        cfg = dataclasses.replace(cfg, visual=p.visual)
    if max_episode_steps is not None:
        if max_episode_steps < 2:
            raise DatasetError(f'max_episode_steps must be >= 2, got {max_episode_steps}')
        cfg = dataclasses.replace(cfg, max_episode_steps=int(max_episode_steps))
    return cfg


def episode_seed(seed, index):
    """Deterministic 32-bit seed of episode ``index`` (train episodes first, then validation)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# ---------------------------------------------------------------- workers
_CACHE = {}


def _make_manip(cfg):
    import gymnasium
    import ogbench.manipspace  # noqa: F401  (registers envs)
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    env = gymnasium.make(cfg.env_name, terminate_at_goal=False, mode='data_collection',
                         max_episode_steps=cfg.max_episode_steps)
    if cfg.dataset_type == 'play':
        kw = dict(env=env, noise=cfg.noise, noise_smoothing=cfg.noise_smoothing)
        classes = dict(cube=CubePlanOracle, button=ButtonPlanOracle, drawer=DrawerPlanOracle, window=WindowPlanOracle)
    else:
        kw = dict(env=env, min_norm=cfg.min_norm)
        classes = dict(cube=CubeMarkovOracle, button=ButtonMarkovOracle, drawer=DrawerMarkovOracle,
                       window=WindowMarkovOracle)
    if cfg.family == 'cube':
        agents = dict(cube=classes['cube'](**kw))
    elif cfg.family == 'puzzle':
        agents = dict(button=classes['button'](gripper_always_closed=True, **kw))
    else:  # scene
        agents = {k: c(**kw) for k, c in classes.items()}
        if cfg.dataset_type == 'noisy':
            agents['cube'] = CubeMarkovOracle(max_step=100, **kw)
    return env, agents


def _p_stack(env_name):
    for word, lo_hi in (('single', None), ('double', (0.0, 0.25)), ('triple', (0.05, 0.35)),
                        ('quadruple', (0.1, 0.5))):
        if word in env_name:
            return 0.0 if lo_hi is None else np.random.uniform(*lo_hi)
    return 0.5


def _scene_healthy(qpos):
    """OGBench's scene check: the cube stays visible (not too far right, and only far left when in the drawer)."""
    xyz = qpos[:, 14:17]
    if (xyz[:, 1] >= 0.29).any():
        return False
    return not ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()


def _manip_episode(cfg, seed):
    if ('manip', cfg) not in _CACHE:
        _CACHE[('manip', cfg)] = _make_manip(cfg)
    env, agents = _CACHE[('manip', cfg)]
    np.random.seed(seed)
    env.action_space.seed(seed)
    has_buttons = hasattr(env.unwrapped, '_cur_button_states')
    attempt = 0
    while True:
        ob, info = env.reset(seed=seed + attempt)
        attempt += 1
        p_stack = _p_stack(cfg.env_name)
        xi = np.random.uniform(0, cfg.noise) if cfg.dataset_type == 'noisy' else 0.0
        agent = agents[info['privileged/target_task']]
        agent.reset(ob, info)
        ep = collections.defaultdict(list)
        done = False
        while not done:
            if np.random.rand() < cfg.p_random_action:
                action = np.random.uniform(-1.0, 1.0, env.action_space.shape)
            else:
                action = np.asarray(agent.select_action(ob, info), dtype=np.float64)
                if cfg.dataset_type == 'noisy':
                    action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
            action = np.clip(action, -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if agent.done:
                a_ob, a_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = agents[a_info['privileged/target_task']]
                agent.reset(a_ob, a_info)
            ep['observations'].append(ob)
            ep['actions'].append(action)
            ep['terminals'].append(done)
            ep['qpos'].append(info['prev_qpos'])
            ep['qvel'].append(info['prev_qvel'])
            if has_buttons:
                ep['button_states'].append(info['prev_button_states'])
            ob = next_ob
        if cfg.family != 'scene' or _scene_healthy(np.asarray(ep['qpos'])) or attempt >= 20:
            return ep


def _maze_cells(maze_map):
    """(empty cells, vertex cells = empty cells that are not straight hallway cells)."""
    empty, vertex = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            empty.append((i, j))
            vert_hall = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] and maze_map[i, j + 1]
            horz_hall = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] and maze_map[i + 1, j]
            if not (vert_hall or horz_hall):
                vertex.append((i, j))
    return empty, vertex


def _bfs_dists(maze_map, start):
    dist = {start: 0}
    queue = collections.deque([start])
    while queue:
        i, j = queue.popleft()
        for ni, nj in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if maze_map[ni, nj] == 0 and (ni, nj) not in dist:
                dist[(ni, nj)] = dist[(i, j)] + 1
                queue.append((ni, nj))
    return dist


def maze_start_goal(maze_map, empty, vertex, dataset_type):
    """(init_ij, goal_ij) drawn with np.random as OGBench's data_gen_scripts/generate_locomaze.py does: start in any
    empty cell; navigate: goal = any vertex cell (the start cell included); stitch: a cell exactly 4 BFS steps away,
    or the start cell itself where there is none."""
    init_ij = empty[np.random.randint(len(empty))]
    if dataset_type == 'navigate':
        goals = vertex
    else:
        goals = sorted(c for c, d in _bfs_dists(maze_map, init_ij).items() if d == 4) or [init_ij]
    return init_ij, goals[np.random.randint(len(goals))]


def point_action(env, goal_xy):
    """Unit-norm action [2] pointing from the agent to the BFS oracle subgoal toward ``goal_xy``."""
    xy = env.unwrapped.get_xy()
    sub = env.unwrapped.get_oracle_subgoal(xy, goal_xy)[0]
    d = np.asarray(sub, dtype=np.float64) - xy
    return d / (np.linalg.norm(d) + 1e-6)


def _maze_episode(cfg, seed):
    import gymnasium
    import ogbench.locomaze  # noqa: F401

    if ('maze', cfg) not in _CACHE:
        env = gymnasium.make(cfg.env_name, terminate_at_goal=False, max_episode_steps=cfg.max_episode_steps)
        _CACHE[('maze', cfg)] = (env, _maze_cells(env.unwrapped.maze_map))
    env, (empty, vertex) = _CACHE[('maze', cfg)]
    np.random.seed(seed)
    env.action_space.seed(seed)
    init_ij, goal_ij = maze_start_goal(env.unwrapped.maze_map, empty, vertex, cfg.dataset_type)
    ob, _ = env.reset(seed=seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
    ep = collections.defaultdict(list)
    done = False
    while not done:
        action = point_action(env, env.unwrapped.cur_goal_xy) + np.random.normal(0, cfg.noise, 2)
        action = np.clip(action, -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info['success'] and cfg.dataset_type == 'navigate':
            env.unwrapped.set_goal(vertex[np.random.randint(len(vertex))])
        ep['observations'].append(ob)
        ep['actions'].append(action)
        ep['terminals'].append(done)
        ep['qpos'].append(info['prev_qpos'])
        ep['qvel'].append(info['prev_qvel'])
        ob = next_ob
    return ep


def run_episode(cfg, seed):
    """Roll out one episode; returns dict key -> list of per-step arrays (see module docstring for keys)."""
    return _maze_episode(cfg, seed) if cfg.family == 'pointmaze' else _manip_episode(cfg, seed)


def _worker(args):
    from floq_jax.console import quiet_setup

    quiet_setup()  # worker processes (spawn) do not inherit the parent's warning filters
    cfg, seed = args
    ep = run_episode(cfg, seed)
    return {k: np.asarray(v, dtype=_dtype(cfg, k)) for k, v in ep.items()}


_DTYPES = {'terminals': bool, 'button_states': np.int64}


def _dtype(cfg, key):
    """The file dtype of ``key``: OGBench's (uint8 frames for a visual env's observations, else float32)."""
    if key == 'observations' and cfg.visual:
        return np.uint8
    return _DTYPES.get(key, np.float32)


# ---------------------------------------------------------------- collection + writing
def _mp_context():
    """'fork' (fast, works from any script) unless JAX is loaded (its threads make fork unsafe), then 'spawn'."""
    return multiprocessing.get_context('spawn' if 'jax' in sys.modules else 'fork')


def collect(cfg, num_episodes, seed, num_workers=None, progress=True, num_val_episodes=None):
    """Run train+val episodes; returns (train, val) dicts of raw arrays in OGBench's file format."""
    num_val = max(1, num_episodes // 10) if num_val_episodes is None else num_val_episodes
    total = num_episodes + num_val
    jobs = [(cfg, episode_seed(seed, i)) for i in range(total)]
    workers = min(num_workers or os.cpu_count() or 1, total)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f'generating {cfg.dataset_name}', unit='ep', disable=not progress)
    episodes = []
    try:
        if workers <= 1:
            for job in jobs:
                episodes.append(_worker(job))
                bar.update(1)
        else:
            with _mp_context().Pool(workers) as pool:
                for ep in pool.imap(_worker, jobs, chunksize=1):
                    episodes.append(ep)
                    bar.update(1)
    finally:
        bar.close()

    def cat(eps):
        """Join the episodes key by key, freeing each episode's rows once copied (a pixel dataset is GBs: the peak
        stays one copy of it, not two)."""
        out = {}
        for k in list(eps[0]):
            out[k] = np.empty((sum(len(e[k]) for e in eps),) + eps[0][k].shape[1:], eps[0][k].dtype)
            row = 0
            for e in eps:
                part = e.pop(k)
                out[k][row:row + len(part)] = part
                row += len(part)
        return out

    return cat(episodes[:num_episodes]), (cat(episodes[num_episodes:]) if num_val else None)


def _save_npz(fileobj, arrays):
    """Write one compressed .npz (separate function so tests can make it fail)."""
    np.savez_compressed(fileobj, **arrays)


def write_dataset(dataset_dir, name, train, val, sidecar):
    """Atomically write '<name>.npz', '<name>-val.npz' and '<name>.generator.json' into ``dataset_dir``.

    Each file goes to a temporary name in the same directory and is moved into place with os.replace, the train file
    last; on any error the temporary files are removed and no partial '<name>.npz' is left.
    """
    os.makedirs(dataset_dir, exist_ok=True)
    final = {
        'val': os.path.join(dataset_dir, f'{name}-val.npz'),
        'side': os.path.join(dataset_dir, f'{name}.generator.json'),
        'train': os.path.join(dataset_dir, f'{name}.npz'),
    }
    tmp = {k: f'{v}.tmp{os.getpid()}' for k, v in final.items()}
    # Provenance travels with the content: each .npz carries the generator record under MARKER_KEY (OGBench's files
    # have no such key, and OGBench's loader ignores it), so a copy or a symlink is still known as generated.
    marker = {MARKER_KEY: np.asarray(json.dumps(sidecar, sort_keys=True))}
    train = {**train, **marker}
    val = {**val, **marker} if val is not None else None
    try:
        if val is not None:
            with open(tmp['val'], 'wb') as f:
                _save_npz(f, val)
        with open(tmp['train'], 'wb') as f:
            _save_npz(f, train)
        with open(tmp['side'], 'w') as f:
            json.dump(sidecar, f, indent=1, sort_keys=True)
        for k in ('val', 'side', 'train'):
            if k == 'val' and val is None:
                continue
            os.replace(tmp[k], final[k])
    finally:
        for p in tmp.values():
            if os.path.exists(p):
                os.remove(p)
    return final['train']


def generate_dataset(dataset_name, num_episodes, seed, dataset_dir, num_workers=None, max_episode_steps=None,
                     progress=True):
    """Generate '<dataset_dir>/<dataset_name>.npz' (+ '-val.npz' and sidecar); returns the train file path."""
    if int(num_episodes) <= 0:
        raise DatasetError(f'num_episodes must be positive, got {num_episodes}')
    cfg = generation_config(dataset_name, max_episode_steps)
    if cfg.visual:
        from floq_jax.data.rendering import require_rendering

        require_rendering(f'generating {cfg.dataset_name}')
    train, val = collect(cfg, int(num_episodes), seed, num_workers, progress)
    sidecar = dict(
        dataset=cfg.dataset_name, env=cfg.env_name, method=cfg.method, generator_version=GENERATOR_VERSION,
        seed=int(seed), episodes=int(num_episodes), val_episodes=max(1, int(num_episodes) // 10),
        max_episode_steps=cfg.max_episode_steps, noise=cfg.noise, noise_smoothing=cfg.noise_smoothing,
        p_random_action=cfg.p_random_action, train_steps=int(len(train['observations'])),
        val_steps=int(len(val['observations'])) if val is not None else 0,
    )
    if cfg.visual:  # (state datasets keep the record they always had)
        sidecar.update(observations='uint8 frames [64, 64, 3] rendered by the visual env at every step',
                       mujoco_gl=os.environ.get('MUJOCO_GL', ''))
    return write_dataset(dataset_dir, cfg.dataset_name, train, val, sidecar)


__all__ = ['GENERATOR_VERSION', 'FAMILIES', 'generate_dataset', 'generation_config', 'episode_seed', 'collect',
           'write_dataset', 'point_action', 'maze_start_goal']
