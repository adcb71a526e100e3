"""``tr-jax render``: one episode of a trained policy as an HTML page or a GIF."""

from __future__ import annotations

import argparse

from tr_jax.cli._common import add_checkpoint, add_run_dir_argument, add_seed


def parser_options() -> dict:
    """The keyword arguments of the subparser (help, description)."""
    return dict(
        help="one episode of a trained policy as an HTML page or a GIF",
        description=(
            "Plays one episode of the deterministic (mean action) policy of a checkpoint of RUN_DIR and writes it "
            "as Brax's HTML viewer page (--out; brax.io.html, the page loads the viewer script from Brax's CDN) "
            "and/or an animated GIF drawn on the CPU (--gif; needs pip install 'tr_jax[render]'). Brax envs only."
        ),
    )


def add_arguments(r: argparse.ArgumentParser) -> None:
    """The options of ``tr-jax render`` on ``r``."""
    add_run_dir_argument(r)
    r.add_argument("--out", default=None, metavar="FILE.html", help="the HTML page to write")
    r.add_argument("--gif", default=None, metavar="FILE.gif", help="the animated GIF to write")
    add_checkpoint(r)
    r.add_argument(
        "--policy-seed",
        type=int,
        default=0,
        metavar="I",
        help="which of the run's seeds acts (0 .. num_seeds-1, default 0)",
    )
    add_seed(r, 0, "seed of the episode's initial state (default 0)")
    r.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="end the episode after at most N env steps (default the run's episode_length)",
    )
    g = r.add_argument_group("GIF")
    g.add_argument("--width", type=int, default=320, help="frame width in pixels (default 320)")
    g.add_argument("--height", type=int, default=240, help="frame height in pixels (default 240)")
    g.add_argument("--fps", type=float, default=25.0, help="frames per second, at most 50 (default 25)")
    g.add_argument(
        "--stride",
        type=int,
        default=None,
        metavar="K",
        help="one frame every K env steps (default: the K that plays the episode closest to real time)",
    )


def run(args) -> int:
    """Writes the page and/or the GIF and describes the episode; returns 0 (errors are raised)."""
    from tr_jax.render import render_run

    done = render_run(
        args.run_dir,
        args.out,
        args.checkpoint,
        args.policy_seed,
        args.seed,
        gif=args.gif,
        max_steps=args.max_steps,
        width=args.width,
        height=args.height,
        fps=args.fps,
        stride=args.stride,
    )
    ep = done.episode
    end = "a terminal state" if ep.terminated else f"the {ep.length}-step limit"
    print(
        f"wrote {', '.join(f for f in (args.out, args.gif) if f)}: checkpoint at iteration {ep.iteration}, one "
        f"deterministic episode of {ep.length} env steps (ended by {end}), return {ep.episode_return:.2f}"
    )
    if args.gif:
        print(
            f"{args.gif}: {done.gif_frames} frames of {args.width}x{args.height} pixels (one every {done.stride} "
            f"env steps) at {args.fps:g} frames per second"
        )
    return 0
