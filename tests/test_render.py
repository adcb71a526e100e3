"""``tr-jax render``: one deterministic episode of a trained policy as Brax's HTML viewer page."""

import base64
import json
import os
import re
import zlib

import jax
import numpy as np
import pytest

from tr_jax import cli
from tr_jax.config import TrainConfig

PENDULUM = TrainConfig(env_name="inverted_pendulum", backend="positional", episode_length=30, num_envs=4,
                       unroll_length=8, total_env_steps=4 * 8 * 2, algorithm="ppo", num_epochs=1, num_minibatches=2,
                       policy_hidden=(8,), value_hidden=(8,), chunk_iterations=2, eval_every=0, eval_episodes=1,
                       checkpoint_every=0)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """A run directory of 2 seeds with one checkpoint (iteration 2) of freshly initialised TrainStates, written
    as the host loop writes them. (Training them first would compile the env step twice more, in the chunk and
    the evaluation -- minutes on a busy 2-core machine; tests/test_run.py covers run directories from training.)"""
    from tr_jax import rundir as R
    from tr_jax.checkpoint import Checkpoints
    from tr_jax.config import config_to_dict
    from tr_jax.train import make_trainer

    rd = R.RunDir.create(str(tmp_path_factory.mktemp("runs") / "pendulum"))
    R.write_json(rd.config, config_to_dict(PENDULUM))
    rd.write_info(seed=0, num_seeds=2)
    state = jax.jit(jax.vmap(make_trainer(PENDULUM).init))(jax.random.split(jax.random.key(0), 2))
    ck = Checkpoints(rd.checkpoints)
    ck.save(2, state, {"iteration": 2, "env_steps": 2 * PENDULUM.batch_size})
    ck.close()
    return rd.path


def _page_states(path):
    """The trajectory embedded in a brax.io.html page: the decoded system JSON's ``states``."""
    page = open(path).read()
    blob = max(re.findall(r"[A-Za-z0-9+/=]{200,}", page), key=len)
    return json.loads(zlib.decompress(base64.b64decode(blob)))["states"]


def test_render_writes_the_episode(pendulum_run, tmp_path, capsys):
    out = str(tmp_path / "episode.html")
    assert cli.main(["render", pendulum_run, "--out", out, "--seed", "3"]) == 0
    msg = capsys.readouterr().out
    length = int(re.search(r"episode of (\d+) env steps", msg).group(1))
    assert 1 <= length <= PENDULUM.episode_length
    states = _page_states(out)
    assert len(states["x"]) == length + 1  # the reset state and one frame per env step
    assert "checkpoint at iteration 2" in msg
    ended_by_termination = "ended by a terminal state" in msg
    assert ended_by_termination == (length < PENDULUM.episode_length)
    pos = np.array([f["pos"] for f in states["x"]])  # [frames, bodies, 3]
    # the first frame is the env's reset state for that seed; the cart and pole move during the episode
    from brax import envs

    reset = jax.jit(envs.get_environment("inverted_pendulum", backend="positional").reset)(jax.random.key(3))
    np.testing.assert_allclose(pos[0], np.asarray(reset.pipeline_state.x.pos), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.diff(pos, axis=0)).max(axis=(1, 2)) > 0)  # every frame is a new state


def test_render_errors(pendulum_run, tmp_path, capsys):
    for argv, match in ((["--out", str(tmp_path / "x.png")], "name it FILE.html"),
                        (["--out", str(tmp_path / "x.html"), "--policy-seed", "2"], "policy seed 2 out of range"),
                        (["--out", str(tmp_path / "x.html"), "--checkpoint", "1"], "no checkpoint 1")):
        assert cli.main(["render", pendulum_run, *argv]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "x.html")
