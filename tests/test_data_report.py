"""floq_jax.data.oracles: the lights-out GF(2) solver, the single-task oracle drivers (cube-double, puzzle, scene) and
the pointmaze start/goal rule of the generator (as OGBench's generate_locomaze.py)."""
import itertools

import numpy as np
import pytest

from floq_jax.data.generate import _bfs_dists, _maze_cells, maze_start_goal
from floq_jax.data.oracles import gf2_solve, lights_out_matrix, lights_out_presses, oracle_success


def _all_press_effects(rows, cols):
    """[2**n, n] every press set and [2**n, n] the toggles it makes (brute force)."""
    n = rows * cols
    presses = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.int64)
    return presses, presses @ lights_out_matrix(rows, cols).T.astype(np.int64) % 2


def test_lights_out_matrix():
    a = lights_out_matrix(3, 3)
    np.testing.assert_array_equal(a[:, 4], [0, 1, 0, 1, 1, 1, 0, 1, 0])  # centre: itself + 4 neighbours
    np.testing.assert_array_equal(a[:, 0], [1, 1, 0, 1, 0, 0, 0, 0, 0])  # corner: itself + 2
    np.testing.assert_array_equal(a, a.T)


@pytest.mark.parametrize('rows,cols', [(3, 3), (4, 4)])
def test_lights_out_presses_reach_goal_and_are_fewest(rows, cols):
    rng = np.random.default_rng(0)
    n = rows * cols
    a = lights_out_matrix(rows, cols)
    presses, effects = _all_press_effects(rows, cols)
    effect_code = effects @ (1 << np.arange(n))
    solvable = unsolvable = 0
    for _ in range(100):
        states, goal = rng.integers(0, 2, n), rng.integers(0, 2, n)
        need = (states + goal) % 2
        hits = effect_code == need @ (1 << np.arange(n))
        got = lights_out_presses(states, goal, rows, cols)
        if not hits.any():
            assert got is None
            unsolvable += 1
            continue
        solvable += 1
        x = np.zeros(n, dtype=np.int64)
        x[got] = 1
        np.testing.assert_array_equal((states + a @ x) % 2, goal)
        assert len(got) == presses[hits].sum(1).min()  # fewest presses (4x4 has a 4-dim null space)
    assert solvable > 0 and (unsolvable > 0) == (rows == 4)  # 3x3 is always solvable, 4x4 only for 1/16 of goals


def test_gf2_solve_random_systems():
    rng = np.random.default_rng(1)
    for _ in range(50):
        m, n = rng.integers(2, 9, 2)
        a = rng.integers(0, 2, (m, n))
        b = a @ rng.integers(0, 2, n) % 2  # consistent by construction
        x, null = gf2_solve(a, b)
        np.testing.assert_array_equal(a @ x % 2, b)
        for v in null:
            assert not (a @ v % 2).any() and v.any()
    assert gf2_solve(np.array([[1, 1], [1, 1]]), np.array([0, 1]))[0] is None


def test_oracle_success_puzzle_3x3_task4():
    # 9 presses from the solver (init 'diamond' -> all on)
    assert oracle_success('puzzle-3x3-play-v0', 4, num_episodes=1) == 1.0


def test_oracle_success_cube_double_swap():
    # task4 swaps the two cubes: one must go to a free spot first
    rate, details = oracle_success('cube-double-play-v0', 4, num_episodes=1, return_details=True)
    assert isinstance(rate, float) and rate > 0, details
    assert len([s for s in details[0][2] if s.startswith('cube')]) == 3, details


def test_oracle_success_scene_put_in_drawer():
    # task4: unlock the drawer, open it, put the cube in, close it
    assert oracle_success('scene-play-v0', 4, num_episodes=1) == 1.0


def test_oracle_success_none_only_without_oracle():
    assert oracle_success('antmaze-large-navigate-v0', 1) is None


def test_maze_start_goal_as_ogbench():
    import gymnasium
    import ogbench.locomaze  # noqa: F401

    env = gymnasium.make('pointmaze-teleport-v0')
    maze_map = env.unwrapped.maze_map
    empty, vertex = _maze_cells(maze_map)
    np.random.seed(0)
    same = 0
    for _ in range(300):
        init, goal = maze_start_goal(maze_map, empty, vertex, 'stitch')
        d = _bfs_dists(maze_map, init)
        assert d[goal] == 4 or (goal == init and 4 not in d.values()), (init, goal)
        init, goal = maze_start_goal(maze_map, empty, vertex, 'navigate')
        assert goal in vertex
        same += goal == init
    assert same > 0  # OGBench does not exclude the start cell from navigate goals
    # the one teleport cell with nothing 4 steps away keeps its own cell as the stitch goal
    lonely = [c for c in empty if 4 not in _bfs_dists(maze_map, c).values()]
    assert lonely
    np.random.seed(1)
    empty_only = [lonely[0]]
    assert maze_start_goal(maze_map, empty_only, vertex, 'stitch') == (lonely[0], lonely[0])
    env.close()
