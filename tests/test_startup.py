"""Time to first step: one chunk program per run, the persistent compilation cache (tr_jax/compile_cache.py).

Compilations are counted from JAX's own monitoring events (``/jax/core/compile/backend_compile_duration``,
fired once per program XLA compiles or loads from the persistent cache; ``/jax/compilation_cache/cache_hits``),
never from timings.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading

import _line_env
import jax
import jax.monitoring
import numpy as np
import pytest

from tr_jax import compile_cache
from tr_jax.config import config_to_dict
from tr_jax.run import run
from tr_jax.rundir import read_jsonl
from tr_jax.train import make_trainer

_line_env.register()
HERE = os.path.dirname(os.path.abspath(__file__))

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"

# 5 iterations in chunks of 2: 2 + 2 + 1. Hidden sizes no other test uses, so that no program of this
# process's in-memory cache stands in for the compilations counted here.
UNEVEN = _line_env.line_config(
    5,
    episode_length=50,
    num_epochs=1,
    policy_hidden=(7,),
    value_hidden=(7,),
    algorithm="ppo",
    chunk_iterations=2,
    checkpoint_every=0,
    eval_every=0,
    eval_episodes=2,
)


@contextlib.contextmanager
def compiled_functions():
    """Yields a list that collects ``(function name, thread name)`` of every program XLA compiles meanwhile (in
    this process)."""
    names = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            names.append((str(kwargs.get("fun_name")), threading.current_thread().name))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.slow
def test_uneven_run_compiles_one_chunk_program_and_evaluation_in_the_background(tmp_path, capsys):
    with compiled_functions() as names:
        result = run(UNEVEN, seed=1, num_seeds=2, run_dir=str(tmp_path / "r"), progress="lines")
    main = threading.main_thread().name
    # (through the program cache, tr_jax/programs.py: the suite runs with the compilation cache on, conftest.py)
    assert [x for x in names if "train_chunk" in x[0]] == [("jit(cached_train_chunk)", main)], names
    # the evaluation program compiled once, in the loop's background thread, and the display said so
    assert [x for x in names if "evaluate" in x[0]] == [("jit(cached_evaluate)", "tr_jax-compile_0")], names
    out = capsys.readouterr().out
    assert "compiling the evaluation in the background" in out and "compiled the evaluation program in" in out
    # exactly the iterations run: 5, the last chunk's padding dropped
    assert result.iteration == 5 and result.metrics["kl_max"].shape == (2, 5)
    np.testing.assert_array_equal(np.asarray(result.state.iteration), [5, 5])
    rows = read_jsonl(str(tmp_path / "r" / "metrics.jsonl"))
    assert sorted((r["iteration"], r["seed"]) for r in rows) == [(i, s) for i in range(5) for s in range(2)]
    # the same numbers as the 5 iterations in one plain (scan) chunk
    trainer = make_trainer(UNEVEN)
    keys = jax.random.split(jax.random.key(1), 2)
    state, metrics = jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None)), static_argnums=1)(
        jax.jit(trainer.init_runs)(keys), 5
    )
    for k in ("kl_max", "policy_loss", "value_loss", "episode_return"):
        np.testing.assert_allclose(result.metrics[k], np.asarray(metrics[k]), rtol=1e-6, atol=1e-7, err_msg=k)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        result.state.algo.policy_params,
        state.algo.policy_params,
    )


def _child(tmp_path, name, config_file, *flags, **env):
    """``tr-jax train`` in a new process (tests/_run_child.py); returns its JAX event counts and metric rows."""
    events = tmp_path / f"{name}.json"
    env = dict(
        os.environ,
        TR_JAX_TEST_EVENTS=str(events),
        **env,
        PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE), os.environ.get("PYTHONPATH")])),
    )
    p = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "_run_child.py"),
            "train",
            config_file,
            "--run-dir",
            str(tmp_path / name),
            "--progress",
            "lines",
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    rows = read_jsonl(str(tmp_path / name / "metrics.jsonl")) + read_jsonl(str(tmp_path / name / "eval.jsonl"))
    return json.loads(events.read_text()), rows, p.stdout + p.stderr


@pytest.mark.slow
def test_a_second_process_loads_the_programs_from_the_cache(tmp_path):
    config_file = tmp_path / "uneven.json"
    config_file.write_text(json.dumps(config_to_dict(UNEVEN)))
    # every program is written (the line env's compile in well under JAX's default 1 s threshold)
    env = dict(TR_JAX_COMPILE_CACHE=str(tmp_path / "cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cold_events, cold, cold_out = _child(tmp_path, "cold", str(config_file), **env)
    warm_events, warm, warm_out = _child(tmp_path, "warm", str(config_file), **env)
    off_events, off, off_out = _child(tmp_path, "off", str(config_file), "--no-compile-cache", **env)
    hits, misses = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
    assert cold_events.get(hits, 0) == 0 and cold_events[misses] >= 2, cold_events  # the chunk and evaluation
    assert warm_events[hits] == cold_events[misses] and warm_events.get(misses, 0) == 0, warm_events
    assert off_events.get(hits, 0) == 0 and off_events.get(misses, 0) == 0, off_events
    # the warm process did not trace the programs either: their traces came from the program cache
    traced = "/jax/core/compile/jaxpr_trace_duration:"
    for fn in ("train_chunk", "evaluate"):
        assert cold_events.get(traced + fn, 0) >= 1 and off_events.get(traced + fn, 0) >= 1, fn
        assert warm_events.get(traced + fn, 0) == 0, (fn, warm_events)
    loaded = "(its trace loaded from the program cache)"
    assert cold_out.count(loaded) == off_out.count(loaded) == 0 and warm_out.count(loaded) == 2, warm_out
    assert len(cold) == 5 + 1 and cold == warm == off  # the same numbers, to the last bit


@pytest.mark.slow
def test_a_damaged_program_file_is_reported_removed_and_traced_again(tmp_path):
    """64 flipped bytes in the middle of the cached chunk program: the next run succeeds, traces the chunk again
    and says so in one line naming the file; the run after it loads the new file."""
    config_file = tmp_path / "uneven.json"
    config_file.write_text(json.dumps(config_to_dict(UNEVEN)))
    env = dict(TR_JAX_COMPILE_CACHE=str(tmp_path / "cache"))
    _, cold, _ = _child(tmp_path, "cold", str(config_file), **env)
    (path,) = (tmp_path / "cache" / "tr_jax_programs").glob("train_chunk-*.jaxexport")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    events, again, out = _child(tmp_path, "again", str(config_file), **env)
    warnings = [line for line in out.splitlines() if "warning" in line]
    assert warnings == [
        f"warning: the cached program {path} does not match the sha256 written with it (altered or truncated on "
        f"disk); removed it, tracing the program again"
    ], out
    assert events.get("/jax/core/compile/jaxpr_trace_duration:train_chunk", 0) >= 1  # traced again
    assert again == cold  # the same numbers
    _, _, out = _child(tmp_path, "third", str(config_file), **env)
    assert "warning" not in out and out.count("(its trace loaded from the program cache)") == 2, out


@pytest.mark.slow
def test_a_read_only_compilation_cache_is_read_and_said_once(tmp_path, mount_tmpfs):
    """A warm cache on a file system remounted read-only: the next run loads every program from it (JAX's
    eviction lock, which cannot be created there, would make it read nothing) and says so in one line, without
    JAX's warnings; a cache directory that cannot be made turns the cache off, in one line."""
    config_file = tmp_path / "uneven.json"
    config_file.write_text(json.dumps(config_to_dict(UNEVEN)))
    cache = mount_tmpfs("64m") / "cache"
    env = dict(TR_JAX_COMPILE_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cold_events, cold, _ = _child(tmp_path, "cold", str(config_file), **env)
    subprocess.run(["mount", "-o", "remount,ro", str(cache.parent)], check=True)
    events, warm, out = _child(tmp_path, "warm", str(config_file), **env)
    hits, misses = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
    assert events.get(hits, 0) == cold_events[misses] and events.get(misses, 0) == 0, events
    assert "Warning" not in out and out.count("(its trace loaded from the program cache)") == 2, out
    notes = [line for line in out.splitlines() if "compilation cache" in line]
    assert notes == [
        f"note: the compilation cache {cache} is read-only ({cache} is on a read-only file system): its programs "
        f"load, the others compile in every run and are not saved"
    ], out
    assert warm == cold
    (tmp_path / "file").write_text("")
    events, off, out = _child(tmp_path, "off", str(config_file), TR_JAX_COMPILE_CACHE=str(tmp_path / "file" / "c"))
    assert "Warning" not in out and events.get(hits, 0) == 0 and off == cold, out
    assert [line for line in out.splitlines() if "compilation cache" in line] == [
        f"note: the compilation cache {tmp_path / 'file' / 'c'} cannot be made ({tmp_path / 'file'} is a file, "
        f"not a directory): running without it (set TR_JAX_COMPILE_CACHE to a writable directory, or off)"
    ], out


def test_cache_directory_from_the_environment(tmp_path):
    assert compile_cache.cache_dir({"TR_JAX_COMPILE_CACHE": str(tmp_path)}) == str(tmp_path)
    for off in ("off", "0", "false", "No", ""):
        assert compile_cache.cache_dir({"TR_JAX_COMPILE_CACHE": off}) is None
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/tr_jax/jax_compile"
    assert compile_cache.cache_dir({"HOME": "/h"}).endswith(os.path.join(".cache", "tr_jax", "jax_compile"))


def test_divergence_message_from_structured_data():
    from tr_jax.run import Divergence, divergence_message

    one = divergence_message([Divergence("", [(0, 6), (1, 9)], "/r/checkpoints/6")], sweep=False)
    assert one == (
        "training diverged at iteration 6 (seed 0: iteration 6, seed 1: iteration 9): losses or parameters "
        "became non-finite; stopped at the end of the chunk. The last good checkpoint is /r/checkpoints/6."
    )
    two = divergence_message([Divergence("eps=1", [(1, 4)], None), Divergence("eps=2", [(0, 3)], "/s/c/2")], True)
    assert two.startswith("training diverged at iteration 3 (eps=1: seed 1: iteration 4; eps=2: seed 0: iteration 3)")
    assert two.endswith("chunk. eps=1: no checkpoint had been written yet; eps=2: the last good checkpoint is /s/c/2.")
