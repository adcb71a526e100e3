"""``tr-jax render``: one deterministic episode of a trained policy as Brax's HTML viewer page and a GIF."""

import base64
import contextlib
import io
import json
import os
import re
import sys
import zlib

import jax
import numpy as np
import pytest

from tr_jax import cli
from tr_jax.config import TrainConfig

# one xdist worker runs this module (--dist loadgroup): its module fixture (rendered) is computed once
pytestmark = pytest.mark.xdist_group("render")

PENDULUM = TrainConfig(
    env_name="inverted_pendulum",
    backend="positional",
    episode_length=30,
    num_envs=4,
    unroll_length=8,
    total_env_steps=4 * 8 * 2,
    algorithm="ppo",
    num_epochs=1,
    num_minibatches=2,
    policy_hidden=(8,),
    value_hidden=(8,),
    chunk_iterations=2,
    eval_every=0,
    eval_episodes=1,
    checkpoint_every=0,
)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """A run directory of 2 seeds with one checkpoint (iteration 2) of freshly initialised TrainStates (the
    policy's mean pushed to +1, so that the cart moves and the pole falls visibly), written as the host loop
    writes them. (Training them first would compile the env step twice more, in the chunk and
    the evaluation -- minutes on a busy 2-core machine; tests/test_run.py covers run directories from training.)"""
    from tr_jax import rundir as R
    from tr_jax.checkpoint import Checkpoints
    from tr_jax.config import config_to_dict
    from tr_jax.train import make_trainer

    rd = R.RunDir.create(str(tmp_path_factory.mktemp("runs") / "pendulum"))
    R.write_json(rd.config, config_to_dict(PENDULUM))
    rd.write_info(seed=0, num_seeds=2)
    state = jax.jit(make_trainer(PENDULUM).init_runs)(jax.random.split(jax.random.key(0), 2))
    state = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            x + 1 if "'mean_head'" in jax.tree_util.keystr(path) and "'bias'" in jax.tree_util.keystr(path) else x
        ),
        state,
    )
    ck = Checkpoints(rd.checkpoints)
    ck.save(2, state, {"iteration": 2, "env_steps": 2 * PENDULUM.batch_size})
    ck.close()
    return rd.path


MAX_STEPS, STRIDE, WIDTH, HEIGHT = 24, 2, 96, 72


@pytest.fixture(scope="module")
def rendered(pendulum_run, tmp_path_factory):
    """One ``tr-jax render`` writing both the page and the GIF (one rollout compiled): ``(html, gif, stdout)``."""
    out = tmp_path_factory.mktemp("rendered")
    html, gif = str(out / "episode.html"), str(out / "episode.gif")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert (
            cli.main(
                [
                    "render",
                    pendulum_run,
                    "--out",
                    html,
                    "--gif",
                    gif,
                    "--seed",
                    "3",
                    "--max-steps",
                    str(MAX_STEPS),
                    "--stride",
                    str(STRIDE),
                    "--width",
                    str(WIDTH),
                    "--height",
                    str(HEIGHT),
                ]
            )
            == 0
        )
    return html, gif, printed.getvalue()


def _page_states(path):
    """The trajectory embedded in a brax.io.html page: the decoded system JSON's ``states``."""
    page = open(path).read()
    blob = max(re.findall(r"[A-Za-z0-9+/=]{200,}", page), key=len)
    return json.loads(zlib.decompress(base64.b64decode(blob)))["states"]


def test_render_writes_the_episode(rendered):
    out, _, msg = rendered
    length = int(re.search(r"episode of (\d+) env steps", msg).group(1))
    assert 1 <= length <= MAX_STEPS < PENDULUM.episode_length
    states = _page_states(out)
    assert len(states["x"]) == length + 1  # the reset state and one frame per env step
    assert "checkpoint at iteration 2" in msg
    ended_by_termination = "ended by a terminal state" in msg
    assert ended_by_termination == (length < MAX_STEPS)
    assert ended_by_termination or f"ended by the {MAX_STEPS}-step limit" in msg
    pos = np.array([f["pos"] for f in states["x"]])  # [frames, bodies, 3]
    # the first frame is the env's reset state for that seed; the cart and pole move during the episode
    from brax import envs

    reset = jax.jit(envs.get_environment("inverted_pendulum", backend="positional").reset)(jax.random.key(3))
    np.testing.assert_allclose(pos[0], np.asarray(reset.pipeline_state.x.pos), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.diff(pos, axis=0)).max(axis=(1, 2)) > 0)  # every frame is a new state


def _gif_frames(path):
    """The GIF's frames ``[F, H, W, 3]`` (uint8 RGB) and each frame's time in ms."""
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        frames = [(np.asarray(f.convert("RGB")), f.info["duration"]) for f in ImageSequence.Iterator(im)]
    return np.stack([f for f, _ in frames]), [d for _, d in frames]


def test_render_writes_the_gif(rendered):
    _, gif, msg = rendered
    length = int(re.search(r"episode of (\d+) env steps", msg).group(1))
    frames, durations = _gif_frames(gif)
    assert frames.shape == (len(range(0, length + 1, STRIDE)), HEIGHT, WIDTH, 3)  # every 2nd state, reset first
    assert f"{len(frames)} frames of {WIDTH}x{HEIGHT} pixels (one every {STRIDE} env steps) at 25" in msg
    assert durations == [40] * len(frames)  # 25 frames per second
    rgb = frames.astype(int)
    robot = rgb[..., 0] - rgb[..., 2] > 25  # [F, H, W]: Brax's brown (the sky is blue, the rail white)
    assert np.all(robot.sum(axis=(1, 2)) >= 20), robot.sum(axis=(1, 2))  # the cart and pole in every frame
    changed = (np.abs(np.diff(rgb, axis=0)).sum(axis=-1) > 60).sum(axis=(1, 2))  # [F - 1] pixels
    assert np.all(changed >= 5), changed  # the cart moves and the pole falls from frame to frame


def _body_at(pos, quat):
    """A stand-in for a Brax pipeline state of one body: ``x.pos [1, 3]``, ``x.rot [1, 4]`` (w, x, y, z)."""
    from types import SimpleNamespace as NS

    return NS(x=NS(pos=np.array([pos], float), rot=np.array([quat], float)))


def test_gif_draws_every_geom_kind(tmp_path):
    """Box, cylinder, ellipsoid and mesh (and the ground) of an MJCF in their colours, where the body is."""
    from brax.io import mjcf

    from tr_jax import gif

    sys_ = mjcf.loads("""<mujoco><asset><mesh name="tet" vertex="0 0 0  0.3 0 0  0 0.3 0  0 0 0.3"/></asset>
      <worldbody><geom type="plane" size="0 0 1"/>
      <body pos="0 0 0.5"><joint type="free"/><geom type="box" size="0.2 0.1 0.05" rgba="1 0 0 1"/>
        <geom type="cylinder" size="0.1 0.2" pos="0.5 0 0" rgba="0 1 0 1"/>
        <geom type="ellipsoid" size="0.1 0.2 0.3" pos="-0.5 0 0" rgba="0 0 1 1"/>
        <geom type="mesh" mesh="tet" pos="0 0.5 0" rgba="1 1 0 1"/></body></worldbody></mujoco>""")
    turn = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # 90 degrees about z
    states = [_body_at([x, 0.0, 0.5], q) for x, q in ((0.0, [1.0, 0, 0, 0]), (3.0, turn))]
    pos, quat = gif.geom_poses(sys_, states)  # body pose, then the geom's offset turned with the body
    np.testing.assert_allclose(pos[1, 1:3], [[3.0, 0.0, 0.5], [3.0, 0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(quat[1, 1], turn, atol=1e-6)
    frames = gif.render_frames(sys_, states, 160, 120)
    assert frames.shape == (2, 120, 160, 3) and frames.dtype == np.uint8
    for rgb in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)):  # shaded, but the hue stays
        on, off = np.array(rgb, bool), ~np.array(rgb, bool)
        hue = (frames[..., on].min(axis=-1) > 80) & (frames[..., off].max(axis=-1, initial=0) < 60)  # [F, H, W]
        assert np.all(hue.sum(axis=(1, 2)) > 20), (rgb, hue.sum(axis=(1, 2)))
    assert np.abs(np.diff(frames.astype(int), axis=0)).max() > 0
    gif.write_gif(str(tmp_path / "x.gif"), frames, 10)
    read, durations = _gif_frames(tmp_path / "x.gif")
    assert read.shape == frames.shape and durations == [100, 100]


def test_gif_turns_geoms_with_their_body():
    from brax.io import mjcf

    from tr_jax import gif

    sys_ = mjcf.loads(
        '<mujoco><worldbody><body pos="0 0 1"><joint type="free"/>'
        '<geom type="box" size="0.4 0.05 0.05" rgba="1 0 0 1"/></body></worldbody></mujoco>'
    )
    upright = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # 90 degrees about y: the long side along z
    frames = gif.render_frames(sys_, [_body_at([0, 0, 1], [1, 0, 0, 0]), _body_at([0, 0, 1], upright)], 120, 120)
    for frame, lying in zip(frames, (True, False)):
        rows, cols = np.nonzero((frame[..., 0] > 80) & (frame[..., 1:].max(axis=-1) < 60))  # the red box
        assert (np.ptp(cols) > 2 * np.ptp(rows)) if lying else (np.ptp(rows) > 2 * np.ptp(cols)), (lying, rows, cols)


def test_gif_without_its_renderer_says_what_to_install(pendulum_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pytinyrenderer", None)  # `import pytinyrenderer` raises ImportError
    assert cli.main(["render", pendulum_run, "--gif", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "pytinyrenderer" in err and "pip install 'tr_jax[render]'" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "x.gif")


def test_playground_runs_are_refused(tmp_path, capsys):
    from tr_jax import rundir as R
    from tr_jax.config import config_to_dict

    rd = R.RunDir.create(str(tmp_path / "playground"))  # refused from its config, before any env or checkpoint
    R.write_json(rd.config, config_to_dict(PENDULUM.replace(env_name="playground:CartpoleBalance")))
    rd.write_info(seed=0, num_seeds=1)
    for out in (["--gif", str(tmp_path / "x.gif")], ["--out", str(tmp_path / "x.html")]):
        assert cli.main(["render", rd.path, *out]) == 2
        err = capsys.readouterr().err
        assert "'playground:CartpoleBalance' is a MuJoCo Playground env" in err and len(err.strip().splitlines()) == 1


def test_render_errors(pendulum_run, tmp_path, capsys):
    for argv, match in (
        (["--out", str(tmp_path / "x.png")], "name it FILE.html"),
        (["--out", str(tmp_path / "x.html"), "--policy-seed", "2"], "policy seed 2 out of range"),
        (["--out", str(tmp_path / "x.html"), "--checkpoint", "1"], "no checkpoint 1"),
        ([], "nothing to write"),
        (["--gif", str(tmp_path / "x.png")], "name it FILE.gif"),
        (["--gif", str(tmp_path / "x.gif"), "--fps", "60"], "at most 50 frames per second"),
        (["--gif", str(tmp_path / "x.gif"), "--stride", "0"], "--stride 0"),
        (["--gif", str(tmp_path / "x.gif"), "--width", "0"], "--width 0"),
        (["--out", str(tmp_path / "x.html"), "--max-steps", "0"], "--max-steps 0"),
    ):
        assert cli.main(["render", pendulum_run, *argv]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "x.html") and not os.path.exists(tmp_path / "x.gif")
