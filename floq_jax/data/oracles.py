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

    p = parse_name(dataset_name).state_name  # a visual dataset is relabelled from its qpos like its state twin
    with np.load(path) as file:  # every row (and the episode layout); the observations are not needed
        raw = {k: file[k] for k in ('qpos', 'qvel', 'button_states') if k in file.files}
        bounds = episode_bounds(file['terminals'])
    out = {}
    for task in tasks:
        env = ogbench.make_env_and_datasets(p.single_task_name(task), env_only=True)
        ds = dict(raw)
        relabel_dataset(p.single_task_env_name(task), env, ds)
        succ = ds['masks'] == 0
        out[task] = float(np.mean([succ[s:e].any() for s, e in bounds]))
        env.close()
    return out


# ---------------------------------------------------------------- lights out over GF(2)
def lights_out_matrix(rows, cols):
    """[n, n] 0/1 matrix (n = rows * cols): column i = the buttons toggled by pressing button i (itself + 4-neighbours)."""
    n = rows * cols
    a = np.zeros((n, n), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                a[(r + dr) * cols + c + dc, i] = 1
    return a


def gf2_solve(a, b):
    """Solve a @ x = b (mod 2). Returns (x, null_basis): one solution [n] uint8 (free variables 0) and a list of
    null-space vectors; (None, []) when the system has no solution."""
    a = np.asarray(a, dtype=np.uint8) % 2
    m, n = a.shape
    aug = np.concatenate([a, (np.asarray(b, dtype=np.uint8) % 2).reshape(m, 1)], axis=1)
    pivots, row = [], 0
    for col in range(n):
        hits = np.flatnonzero(aug[row:, col]) + row if row < m else []
        if len(hits) == 0:
            continue
        aug[[row, hits[0]]] = aug[[hits[0], row]]
        for r in np.flatnonzero(aug[:, col]):
            if r != row:
                aug[r] ^= aug[row]
        pivots.append(col)
        row += 1
        if row == m:
            break
    if aug[row:, n].any():  # a 0 = 1 row
        return None, []
    x = np.zeros(n, dtype=np.uint8)
    for r, col in enumerate(pivots):
        x[col] = aug[r, n]
    null = []
    for free in sorted(set(range(n)) - set(pivots)):
        v = np.zeros(n, dtype=np.uint8)
        v[free] = 1
        for r, col in enumerate(pivots):
            v[col] = aug[r, free]
        null.append(v)
    return x, null


def lights_out_presses(states, goal, rows, cols):
    """Fewest buttons (indices, sorted) whose presses turn ``states`` into ``goal``; None if unreachable."""
    a = lights_out_matrix(rows, cols)
    x, null = gf2_solve(a, (np.asarray(states) + np.asarray(goal)) % 2)
    if x is None:
        return None
    best = x
    if len(null) <= 12:  # try every null-space combination (4x4 has 4, 3x3 none)
        for mask in range(1, 2 ** len(null)):
            y = x.copy()
            for k, v in enumerate(null):
                if mask >> k & 1:
                    y ^= v
            if y.sum() < best.sum():
                best = y
    return [int(i) for i in np.flatnonzero(best)]


# ---------------------------------------------------------------- single-task drivers for OGBench's Markov oracles
def _yaw(wxyz):
    from ogbench.manipspace import lie

    return np.array([lie.SO3(wxyz=np.asarray(wxyz)).compute_yaw_radians()])


def _yaw_gap(a, b):
    """Distance between two gripper yaws modulo pi (the two fingers are interchangeable)."""
    d = (a - b) % np.pi
    return min(d, np.pi - d)


def _cube_task_info(env, info, block=0, pos=None, yaw=None):
    """Add the privileged target keys the cube oracle reads (only present in data-collection mode): move ``block``
    to ``pos``/``yaw`` (default: that block's task target mocap)."""
    u = env.unwrapped
    mocap = u._cube_target_mocap_ids[block]
    info = dict(info)
    info['privileged/target_block'] = block
    info['privileged/target_block_pos'] = np.array(u._data.mocap_pos[mocap] if pos is None else pos, dtype=np.float64)
    info['privileged/target_block_yaw'] = _yaw(u._data.mocap_quat[mocap]) if yaw is None else np.array([yaw])
    return info


class _Subtask:
    """One oracle subtask: kind in ('cube', 'button', 'drawer', 'window', 'turn', 'lift', 'idle') and its parameters."""

    def __init__(self, kind, **params):
        self.kind, self.params = kind, params

    def __repr__(self):
        return f'{self.kind}{self.params}'


class _Driver:
    """Drives OGBench's Markov oracles through subtasks (re-planned from the current state after each one) toward the
    single-task goal held in ``env.unwrapped``. Subclasses give ``plan(info) -> _Subtask`` and use the helpers."""

    max_subtask_steps = 300  # re-plan (and restart the oracle) if one subtask runs this long
    gripper_closed_buttons = False  # ButtonMarkovOracle(gripper_always_closed=...): True for puzzle, as OGBench's data

    def __init__(self, env):
        from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
        from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
        from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle

        self.env, self.u = env, env.unwrapped
        self.oracles = dict(cube=CubeMarkovOracle(env=env), drawer=DrawerMarkovOracle(env=env),
                            window=WindowMarkovOracle(env=env),
                            button=ButtonMarkovOracle(env=env, gripper_always_closed=self.gripper_closed_buttons))
        self.sub, self.steps, self.history = None, 0, []

    def act(self, ob, info):
        if self.sub is None or self.steps >= self.max_subtask_steps or self.finished(self.sub, info):
            placed = self.sub is not None and self.sub.kind == 'cube' and self.steps < self.max_subtask_steps
            # after letting go of a cube, lift straight up (the oracle's own retreat turns the wrist and can knock
            # the cube off its target, e.g. against the drawer wall)
            self.sub = _Subtask('lift', z=0.2) if placed else self.plan(info)
            self.steps = 0
            self.history.append(self.sub)
            if self.sub.kind in self.oracles:
                self.oracles[self.sub.kind].reset(ob, self.task_info(self.sub, info))
        self.steps += 1
        if self.sub.kind == 'idle':
            return np.zeros(5)
        if self.sub.kind == 'lift':  # let the fingers open for a few steps, then go straight up
            return np.array([0.0, 0.0, 0.0 if self.steps <= 4 else 1.0, 0.0, -1.0])
        if self.sub.kind == 'turn':  # rotate the open gripper in place (mod pi: the two fingers are symmetric)
            eff_yaw = info['proprio/effector_yaw'][0]
            target = self.sub.params['yaw'] + np.pi * np.round((eff_yaw - self.sub.params['yaw']) / np.pi)
            return np.clip(np.array([0.0, 0.0, 0.0, (target - eff_yaw) * 3, -1.0]), -1, 1)
        return np.clip(self.oracles[self.sub.kind].select_action(ob, self.task_info(self.sub, info)), -1, 1)

    # ----- per-kind privileged info and completion (the oracles' own thresholds, minus their 'final position' phase)
    def task_info(self, sub, info):
        k, p = sub.kind, sub.params
        if k == 'cube':
            return _cube_task_info(self.env, info, p['block'], p['pos'], p.get('yaw', 0.0))
        info = dict(info)
        if k == 'button':
            b = p['button']
            info['privileged/target_button'] = b
            info['privileged/target_button_state'] = p['state']
            info['privileged/target_button_top_pos'] = self.u._data.site_xpos[self.u._button_site_ids[b]].copy()
        elif k in ('drawer', 'window'):
            info[f'privileged/target_{k}_handle_pos'] = self.handle_at(k, p['slide'])
        return info

    def finished(self, sub, info):
        k, p = sub.kind, sub.params
        eff = info['proprio/effector_pos']
        if k == 'cube':
            at = np.linalg.norm(info[f'privileged/block_{p["block"]}_pos'] - np.asarray(p['pos'])) <= 0.02
            return at and info['proprio/gripper_contact'][0] < 0.1
        if k == 'lift':
            return eff[2] >= p['z']
        if k == 'button':
            return info[f'privileged/button_{p["button"]}_state'] == p['state'] and eff[2] > 0.16
        if k == 'turn':
            return _yaw_gap(info['proprio/effector_yaw'][0], p['yaw']) <= 0.1
        if k in ('drawer', 'window'):
            at = np.linalg.norm(self.handle_at(k, p['slide']) - info[f'privileged/{k}_handle_pos']) <= 0.01
            return at and eff[2] > (0.18 if k == 'drawer' else 0.28)
        return False

    # ----- scene geometry
    def slide(self, k):
        return float(self.u._data.joint(f'{k}_slide').qpos[0])

    def slide_axis(self, k):
        return self.u._data.xaxis[self.u._model.joint(f'{k}_slide').id].copy()

    def handle_at(self, k, slide):
        """World position of the drawer/window handle when its slide joint is at ``slide``."""
        site = self.u._drawer_site_id if k == 'drawer' else self.u._window_site_id
        return self.u._data.site_xpos[site] + self.slide_axis(k) * (slide - self.slide(k))


class _CubeDriver(_Driver):
    """Moves cubes that are off target one at a time: lowest target first, only when nothing is on top of the cube,
    its target slot is empty and (for a stacked target) the cube below is in place; if none qualifies (a swap, a
    cycle, a cube to move out from under another), the blocking cube goes to a free spot first."""

    def positions(self):
        return np.array([self.u._data.joint(f'object_joint_{i}').qpos[:3] for i in range(self.u._num_cubes)])

    def targets(self):
        return np.array([self.u._data.mocap_pos[m] for m in self.u._cube_target_mocap_ids])

    def plan(self, info):
        pos, tar = self.positions(), self.targets()
        n = len(pos)
        done = [np.linalg.norm(pos[i] - tar[i]) <= 0.03 for i in range(n)]
        near = lambda a, b, r=0.03: np.linalg.norm(a[:2] - b[:2]) < r  # noqa: E731
        covered = [any(j != i and near(pos[i], pos[j]) and pos[j][2] > pos[i][2] + 0.02 for j in range(n))
                   for i in range(n)]

        def slot_free(i):
            t = tar[i]
            for j in range(n):
                if j != i and near(pos[j], t, 0.04) and pos[j][2] > t[2] - 0.02:
                    return False  # someone sits in (or above) the target slot
            if t[2] > 0.04:  # stacked target: the supporting cube must be there and done
                return any(j != i and done[j] and near(pos[j], t, 0.02) and abs(pos[j][2] - (t[2] - 0.04)) < 0.015
                           for j in range(n))
            return True

        todo = [i for i in range(n) if not done[i]]
        if not todo:
            return _Subtask('idle')
        ready = [i for i in todo if not covered[i] and slot_free(i)]
        if ready:
            i = min(ready, key=lambda i: (round(tar[i][2], 2), i))
            return _Subtask('cube', block=i, pos=tar[i], yaw=float(_yaw(self.u._data.mocap_quat[
                self.u._cube_target_mocap_ids[i]])[0]))
        free = [i for i in range(n) if not covered[i]]
        on_todo = [i for i in free if any(j in todo and near(pos[i], pos[j]) and pos[i][2] > pos[j][2] + 0.02
                                          for j in range(n))]
        blocking = [i for i in free if i in todo and any(near(pos[i], tar[j], 0.04) for j in todo if j != i)]
        movable = on_todo or blocking or [i for i in free if i in todo] or free
        i = movable[0]
        return _Subtask('cube', block=i, pos=self.free_spot(i, pos, tar), yaw=0.0)

    def free_spot(self, i, pos, tar):
        """Table position farthest (in xy) from every other cube and every target."""
        xs, ys = np.meshgrid(np.linspace(0.32, 0.53, 8), np.linspace(-0.25, 0.25, 11))
        cand = np.stack([xs.ravel(), ys.ravel()], 1)
        avoid = np.concatenate([np.delete(pos, i, 0)[:, :2], tar[:, :2]], 0)
        dist = np.linalg.norm(cand[:, None] - avoid[None], axis=-1).min(1)
        x, y = cand[np.argmax(dist)]
        return np.array([x, y, 0.02])


class _PuzzleDriver(_Driver):
    """Lights out: solve for the fewest presses over GF(2) from the current states, press the nearest one, repeat."""

    gripper_closed_buttons = True

    def plan(self, info):
        u = self.u
        cur = np.asarray(u._cur_button_states)
        presses = lights_out_presses(cur, u._target_button_states, u._num_rows, u._num_cols)
        if not presses:
            return _Subtask('idle')
        eff = info['proprio/effector_pos']
        b = min(presses, key=lambda b: np.linalg.norm(u._data.site_xpos[u._button_site_ids[b]][:2] - eff[:2]))
        return _Subtask('button', button=b, state=int(1 - cur[b]))


class _SceneDriver(_Driver):
    """Scene: cube (into the open drawer when its goal is inside), drawer, window, then the two lock buttons; a
    locked drawer/window (button state 0) is unlocked first."""

    drawer_front_margin = 0.04

    def plan(self, info):
        u = self.u
        buttons = np.asarray(u._cur_button_states)
        goal_buttons = np.asarray(u._target_button_states)
        goal_drawer, goal_window = float(u._target_drawer_pos), float(u._target_window_pos)
        cube = u._data.joint('object_joint_0').qpos[:3].copy()
        goal_cube = u._data.mocap_pos[u._cube_target_mocap_ids[0]].copy()
        # A goal inside the drawer moves with the drawer: shift it to the drawer's current position, and keep it off
        # the drawer's front wall (OGBench's goal touches it) so the gripper's fingers clear the wall; closing the
        # drawer then brings the cube back within the 0.04 success radius.
        in_drawer_goal = goal_cube[1] < -0.3
        cube_goal_now = goal_cube.copy()
        if in_drawer_goal:
            cube_goal_now += self.slide_axis('drawer') * (self.slide('drawer') - goal_drawer)
        cube_done = np.linalg.norm(cube - cube_goal_now) <= 0.03
        cube_target = cube_goal_now.copy()
        if in_drawer_goal:
            center_y = info['privileged/drawer_handle_pos'][1] - 0.17  # drawer box center (handle is 0.17 in front)
            cube_target[1] = np.clip(cube_target[1], center_y - 0.02, center_y + self.drawer_front_margin)
        needs_drawer_open = not cube_done and (in_drawer_goal or u._is_in_drawer(cube))

        def move(k, slide):
            lock = 0 if k == 'drawer' else 1
            if buttons[lock] == 0:
                return _Subtask('button', button=lock, state=1)
            return _Subtask(k, slide=slide)

        if needs_drawer_open and self.slide('drawer') > -0.14:
            return move('drawer', -0.16)
        if not cube_done:
            if in_drawer_goal and _yaw_gap(info['proprio/effector_yaw'][0], np.pi / 2) > 0.1:
                # fingers along x first (yaw pi/2 mod pi): along y they hit the open drawer's front wall
                return _Subtask('turn', yaw=np.pi / 2)
            return _Subtask('cube', block=0, pos=cube_target, yaw=float(_yaw(u._data.mocap_quat[
                u._cube_target_mocap_ids[0]])[0]))
        if abs(self.slide('drawer') - goal_drawer) > 0.02:
            return move('drawer', goal_drawer)
        if abs(self.slide('window') - goal_window) > 0.02:
            return move('window', goal_window)
        for b in range(len(buttons)):
            if buttons[b] != goal_buttons[b]:
                return _Subtask('button', button=b, state=int(goal_buttons[b]))
        return _Subtask('idle')


def make_driver(env, family):
    """The single-task oracle driver for a manipulation family ('cube', 'puzzle', 'scene')."""
    return dict(cube=_CubeDriver, puzzle=_PuzzleDriver, scene=_SceneDriver)[family](env)


def oracle_success(dataset_name, task, num_episodes=3, seed=0, return_details=False):
    """Success rate of the noise-free oracle driven on the single-task env.

    A visual-* name is driven on its state-based twin (the same physics and tasks; no frames to render).
    pointmaze: BFS-subgoal point agent. cube-*, puzzle-*, scene: OGBench's Markov oracles driven through subtasks
    toward the task's goal (see ``_CubeDriver``, ``_PuzzleDriver``, ``_SceneDriver``). Returns None for families
    without an oracle here (antmaze, humanoidmaze, antsoccer). With ``return_details`` also returns per-episode
    (success, steps, subtasks) tuples.
    """
    import ogbench

    p = parse_name(dataset_name).state_name  # a visual env's oracle success is its state twin's (same physics)
    if p.family not in ('pointmaze', 'cube', 'puzzle', 'scene'):
        return None
    from floq_jax.data.generate import point_action

    env = ogbench.make_env_and_datasets(p.single_task_name(task), env_only=True)
    successes, details = [], []
    for ep in range(num_episodes):
        np.random.seed(seed + ep)
        ob, info = env.reset(seed=seed + ep)
        driver = None if p.family == 'pointmaze' else make_driver(env, p.family)
        done, success, steps = False, False, 0
        while not done:
            if driver is None:
                action = point_action(env, env.unwrapped.cur_goal_xy)
            else:
                action = driver.act(ob, info)
            ob, _, terminated, truncated, info = env.step(action)
            steps += 1
            success = success or bool(info['success'])
            done = terminated or truncated
        successes.append(success)
        details.append((success, steps, [] if driver is None else [repr(s) for s in driver.history]))
    env.close()
    rate = float(np.mean(successes))
    return (rate, details) if return_details else rate
