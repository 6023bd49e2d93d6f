"""Evaluation videos: the grid, the MP4 file and the TensorBoard GIF; rendered episodes as published (extra episodes
after the counted ones, every n-th frame and the last); a training run writing them."""

import io
import os

import numpy as np
import pytest

from floq_jax.envs import evaluation
from floq_jax.training import videos
from tests.conftest import tb_events

ENV = 'cube-single-play-singletask-task1-v0'


def test_tile_pads_short_episodes_with_their_dimmed_last_frame_and_borders():
    a = np.full((3, 4, 6, 3), 200, np.uint8)
    b = np.full((1, 4, 6, 3), 100, np.uint8)
    c = np.full((2, 4, 6, 3), 50, np.uint8)
    grid = videos.tile([a, b, c])                       # 2 columns (ceil sqrt 3), 2 rows, the 4th cell black
    assert grid.shape == (3, 2 * 6, 2 * 8, 3) and grid.dtype == np.uint8
    assert grid[0, 1, 1, 0] == 200 and grid[0, 0, 0, 0] == 0                      # a, inside its 1-pixel border
    assert grid[0, 1, 9, 0] == 100 and grid[1, 1, 9, 0] == 50 and grid[2, 1, 9, 0] == 50   # b: held, half bright
    assert grid[2, 7, 1, 0] == 25 and grid[1, 7, 1, 0] == 50                      # c held from its 3rd frame on
    assert grid[:, 6:, 8:].max() == 0                                              # the empty cell
    with pytest.raises(ValueError, match='one frame size'):
        videos.tile([a, np.zeros((2, 5, 6, 3), np.uint8)])


def test_mp4_and_gif_hold_every_frame(tmp_path):
    import imageio.v2 as imageio
    from PIL import Image

    frames = np.zeros((7, 15, 21, 3), np.uint8)       # odd sizes: padded to even for H.264
    frames[:] = (np.arange(7) * 30)[:, None, None, None]  # gray levels: exact enough through YUV 4:2:0
    path = videos.write_mp4(str(tmp_path / 'v' / 'step5.mp4'), frames)
    assert os.listdir(tmp_path / 'v') == ['step5.mp4']
    back = np.stack([f for f in imageio.get_reader(path, format='FFMPEG').iter_data()])
    assert back.shape == (7, 16, 22, 3)
    np.testing.assert_allclose(back[:, :15, :21, 0].mean(axis=(1, 2)), np.arange(7) * 30, atol=6)
    gif = Image.open(io.BytesIO(videos.gif_bytes(frames)))
    assert gif.n_frames == 7 and gif.size == (21, 15)


def _policy(obs, keys, temperature):
    return np.tanh(obs[:, :5] * 0.1)


def test_video_episodes_are_extra_episodes_rendered_every_nth_step():
    """As published: the rendered episodes come after the counted ones (the statistics are those of the same
    evaluation without videos), with the frame after every frame_skip-th step and the last one."""
    kwargs = dict(num_episodes=2, seed=0, max_episode_steps=5, vector_mode='sync')
    plain = evaluation.evaluate(_policy, ENV, **kwargs)
    res = evaluation.evaluate(_policy, ENV, video_episodes=2, video_frame_skip=2, **kwargs)
    for key in ('episode_success', 'episode_return', 'episode_length'):
        np.testing.assert_array_equal(res[key], plain[key])
    assert len(res['videos']) == 2, 'rendering must work here (EGL or OSMesa)'
    assert all(v.dtype == np.uint8 and v.shape[0] == 3 and v.shape[-1] == 3 for v in res['videos'])  # t = 2, 4, 5
    with evaluation.make_evaluator(ENV, **kwargs) as ev:
        counted = ev(_policy)
        third = ev.render_episodes(_policy, 1.0, seed=0, first_episode=2, count=1, frame_skip=2)
        first = ev.render_episodes(_policy, 1.0, seed=0, first_episode=0, count=1, frame_skip=5)
    assert counted['episode_length'][0] == 5
    np.testing.assert_array_equal(third[0], res['videos'][0])   # the first video episode is episode 2 (after 0, 1)
    assert len(first) == 1 and first[0].shape[0] == 1 and not np.array_equal(first[0][-1], third[0][-1])


def test_training_run_writes_grid_videos_to_the_run_dir_and_tensorboard(tmp_path):
    import agents
    from floq_jax.training import runner
    from floq_jax.training.options import RunOptions
    from tests.conftest import tiny_cube_run

    data, config = tiny_cube_run(tmp_path / 'cache', ENV)
    options = RunOptions(env_name=ENV, num_seeds=2, offline_steps=2, steps_per_call=2, log_interval=2,
                         eval_interval=2, save_interval=2, eval_episodes=1, video_episodes=2, video_frame_skip=2,
                         save_dir=str(tmp_path / 'runs'), progress=False, use_mesh=False, log_diagnostics=False,
                         eval_kwargs=dict(vector_mode='sync', max_episode_steps=4))
    dirs = runner.run_offline(agents.agent_class(config.agent_name), config, data, options)
    for d in dirs:
        assert sorted(os.listdir(os.path.join(d, 'videos'))) == ['step0.mp4', 'step2.mp4']
        events = [(step, v) for step, v in tb_events(os.path.join(d, 'tb')) if v.tag == 'evaluation/video']
        assert [s for s, _ in events] == [0, 2]
        image = events[0][1].image
        assert image.encoded_image_string[:6] == b'GIF89a' and (image.height, image.width) == (202, 2 * 202)  # 2 episodes: 1 row x 2
