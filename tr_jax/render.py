"""One episode of a trained policy as Brax's HTML viewer page or an animated GIF: ``tr-jax render``.

:func:`rollout_episode` restores a checkpoint of a run directory, resets the
run's environment (the raw ``brax.envs`` env, no auto-reset) and steps it with
the deterministic policy (the mean action, clipped to Brax's ``[-1, 1]`` as in
training, each action held for ``action_repeat`` env steps) until the episode
ends (a terminal state or ``max_steps`` env steps, by default the run's
``episode_length``). :func:`render_run` writes the states -- the reset state
and the state after every env step -- as the page of :func:`brax.io.html.render`
(the viewer script is loaded from Brax's CDN when the page is opened) and/or
every ``stride``-th of them as a GIF drawn on the CPU (:mod:`tr_jax.gif`).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tr_jax import rundir as R
from tr_jax.envs.sources import split_env_name


class Episode(NamedTuple):
    """One rendered episode.

    env: the raw Brax env (``env.sys`` is the system the viewer draws, ``env.dt`` the seconds per env step).
    frames: list of ``length + 1`` pipeline states (the reset state, then one per env step).
    length: env steps until the episode ended (terminal state or the step limit).
    episode_return: the sum of the env's rewards over those steps.
    terminated: whether it ended by a terminal state (not the step limit).
    iteration: the checkpoint's training iteration.
    """

    env: Any  # a Brax env (brax.envs.Env; brax ships no type information)
    frames: list
    length: int
    episode_return: float
    terminated: bool
    iteration: int


def rollout_episode(
    run_dir: str, checkpoint: int | None = None, policy_seed: int = 0, seed: int = 0, max_steps: int | None = None
) -> Episode:
    """Plays one episode of the deterministic policy of ``run_dir``'s checkpoint (the newest by default).

    Args:
      run_dir: a run directory written by ``tr-jax train``.
      checkpoint: the checkpoint's iteration (default the newest).
      policy_seed: which of the run's seeds (``0 .. num_seeds - 1``) acts.
      seed: PRNG seed of the episode's initial state.
      max_steps: the most env steps the episode lasts (default the run's ``episode_length``).
    Returns:
      :class:`Episode`.
    """
    from tr_jax.policy.loading import load_policy

    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps {max_steps}: an episode lasts at least 1 env step")
    env_name = R.read_json(R.RunDir.existing(run_dir).config)["env_name"]  # refused before the env is built
    if split_env_name(env_name)[0] != "brax":
        raise ValueError(
            f"{run_dir}: rendering draws Brax systems; {env_name!r} is a MuJoCo Playground env "
            "(evaluate it with `tr-jax eval`, or render its states with the env's own render method)"
        )
    policy = load_policy(run_dir, policy_seed, checkpoint)
    config = policy.config
    env = policy.env.env
    if not hasattr(env, "sys"):
        raise ValueError(f"{run_dir}: the env {config.env_name!r} has no Brax system (env.sys) to draw")
    repeat, num_steps = config.action_repeat, max_steps or config.episode_length
    act = policy.act  # the mean action, clipped to Brax's [-1, 1]

    def step(carry, t):
        s, action = carry
        action = jnp.where(t % repeat == 0, act(s.obs), action)
        s = env.step(s, action)
        return (s, action), (s.pipeline_state, s.reward, s.done)

    @jax.jit
    def play(key):
        s0 = env.reset(key)
        _, (frames, reward, done) = jax.lax.scan(
            step, (s0, jnp.zeros((env.action_size,), jnp.float32)), jnp.arange(num_steps)
        )
        return s0.pipeline_state, frames, reward, done

    first, frames, reward, done = play(jax.random.key(seed))
    done = np.asarray(done) > 0
    terminated = bool(done.any())
    length = int(np.argmax(done)) + 1 if terminated else num_steps
    first, frames = jax.tree.map(np.asarray, (first, frames))
    frames = [first] + [jax.tree.map(lambda x, i=i: x[i], frames) for i in range(length)]
    return Episode(env, frames, length, float(np.asarray(reward)[:length].sum()), terminated, policy.iteration)


class Rendered(NamedTuple):
    """What :func:`render_run` wrote: the episode, and the GIF's frame count and stride (0, 0 without a GIF)."""

    episode: Episode
    gif_frames: int
    stride: int


def render_run(
    run_dir: str,
    out: str | None = None,
    checkpoint: int | None = None,
    policy_seed: int = 0,
    seed: int = 0,
    *,
    gif: str | None = None,
    max_steps: int | None = None,
    width: int = 320,
    height: int = 240,
    fps: float = 25.0,
    stride: int | None = None,
) -> Rendered:
    """Writes one deterministic episode of ``run_dir`` (see :func:`rollout_episode` for the arguments they share)
    to ``out`` (Brax's HTML viewer page) and/or ``gif`` (an animated GIF); at least one must be given.

    The GIF shows every ``stride``-th state from the reset state on, ``ceil((length + 1) / stride)`` frames of
    ``width`` x ``height`` pixels, at ``fps`` frames per second; the default stride plays the episode closest
    to real time (``round(1 / (fps * env.dt))``, at least 1). Bad arguments, and a missing GIF renderer,
    fail before the episode is played.
    """
    from tr_jax import gif as G

    if out is None and gif is None:
        raise ValueError("nothing to write: name an HTML page (--out FILE.html) and/or a GIF (--gif FILE.gif)")
    if out is not None and os.path.splitext(out)[1].lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out}: the page is HTML; name it FILE.html")
    if gif is not None:
        if os.path.splitext(gif)[1].lower() != ".gif":
            raise ValueError(f"--gif {gif}: the animation is a GIF; name it FILE.gif")
        G.check_options(width, height, fps, stride)
        G.import_renderer()
    episode = rollout_episode(run_dir, checkpoint, policy_seed, seed, max_steps)
    if out is not None:
        from brax.io import html

        page = html.render(episode.env.sys, episode.frames, height=480, colab=False)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(page)
    if gif is None:
        return Rendered(episode, 0, 0)
    stride = stride or max(1, round(1 / (fps * float(episode.env.dt))))
    images = G.render_frames(episode.env.sys, episode.frames[::stride], width, height)
    os.makedirs(os.path.dirname(os.path.abspath(gif)), exist_ok=True)
    G.write_gif(gif, images, fps)
    return Rendered(episode, len(images), stride)
