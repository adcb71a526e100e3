"""The program cache (tr_jax/programs.py): traced programs kept on disk, keyed by what decides the trace.

The cross-process behaviour of a real run (a warm process traces nothing and writes the same numbers) is in
tests/test_startup.py; these tests check the cache itself on small functions.
"""

import importlib.util
import sys
from typing import NamedTuple

import _line_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tr_jax import programs
from tr_jax.config import TrainConfig
from tr_jax.programs import ProgramCache, env_fingerprint


class State(NamedTuple):
    w: jax.Array
    key: jax.Array
    count: jax.Array


def step(state: State, x):
    """(state, outputs): a PRNG key carried in the state, a dict of outputs."""
    key, sub = jax.random.split(state.key)
    noise = jax.random.normal(sub, state.w.shape)
    w = state.w * 0.5 + x.sum() + noise
    return State(w, key, state.count + 1), {"norm": jnp.linalg.norm(w), "w0": w[0]}


def _state():
    return State(jnp.arange(3.0), jax.random.key(3), jnp.asarray(0, jnp.int32))


class _Env:
    """An env class defined in this file (its fingerprint is this file's hash)."""


def _cache(tmp_path, **config) -> ProgramCache:
    return ProgramCache(str(tmp_path / "programs"), TrainConfig(**config), _Env())


def _equal(a, b):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_cached_program_computes_what_the_function_does_and_loads_in_a_new_cache(tmp_path):
    args = (_state(), jnp.ones(2))
    expected = jax.jit(step)(*args)
    program, loaded = _cache(tmp_path).compile("step", step, args, returns_state=True)
    assert not loaded
    got = program(*args)
    jax.tree.map(_equal, got, expected)
    assert isinstance(got[0], State)
    # a fresh cache object (as in a new process) on the same directory loads the trace instead of tracing
    traced = []
    program2, loaded2 = _cache(tmp_path).compile(
        "step", lambda *a: traced.append(1) or step(*a), args, returns_state=True
    )
    assert loaded2 and traced == []
    jax.tree.map(_equal, program2(*got[0:1], jnp.ones(2)), jax.jit(step)(expected[0], jnp.ones(2)))


def test_the_key_changes_with_whatever_decides_the_trace(tmp_path):
    cache = _cache(tmp_path)
    leaves, tree = jax.tree.flatten((_state(), jnp.ones(2)))
    key = cache.key("step", (10,), tree, leaves)
    assert key == _cache(tmp_path).key("step", (10,), tree, leaves)  # deterministic
    others = [
        cache.key("other", (10,), tree, leaves),  # the program
        cache.key("step", (11,), tree, leaves),  # a static argument
        _cache(tmp_path, eps_mean=0.02).key("step", (10,), tree, leaves),  # any config field
        cache.key("step", (10,), *jax.tree.flatten((_state(), jnp.ones(3)))[::-1]),  # a shape
        cache.key("step", (10,), *jax.tree.flatten((_state(), jnp.ones(2, jnp.int32)))[::-1]),  # a dtype
        cache.key("step", (10,), *jax.tree.flatten(((_state(),), jnp.ones(2)))[::-1]),  # the tree
    ]
    assert len({key, *others}) == len(others) + 1


def test_the_env_fingerprint_follows_the_source_file_of_its_class(tmp_path):
    path = tmp_path / "my_env_module.py"
    path.write_text("class MyEnv:\n    scale = 1.0\n")
    spec = importlib.util.spec_from_file_location("my_env_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_env_module"] = module
    try:
        spec.loader.exec_module(module)
        before = env_fingerprint(module.MyEnv())
        path.write_text("class MyEnv:\n    scale = 2.0\n")  # the user edits their env
        after = env_fingerprint(module.MyEnv())
    finally:
        del sys.modules["my_env_module"]
    assert before.startswith("my_env_module.MyEnv:") and before != after
    cache_a = ProgramCache(str(tmp_path), TrainConfig(), object())
    cache_b = ProgramCache(str(tmp_path), TrainConfig(), _Env())
    leaves, tree = jax.tree.flatten((jnp.ones(2),))
    assert cache_a.key("f", (), tree, leaves) != cache_b.key("f", (), tree, leaves)


def test_a_broken_file_is_reported_and_replaced(tmp_path):
    args = (_state(), jnp.ones(2))
    cache = _cache(tmp_path)
    cache.compile("step", step, args, returns_state=True)
    (path,) = (tmp_path / "programs").glob("step-*.jaxexport")
    path.write_bytes(path.read_bytes()[:100])  # truncated, e.g. by a full disk
    messages = []
    program, loaded = _cache(tmp_path).compile("step", step, args, returns_state=True, log=messages.append)
    assert not loaded and len(messages) == 1 and messages[0].startswith(f"warning: the cached program {path}")
    jax.tree.map(_equal, program(*args), jax.jit(step)(*args))
    assert _cache(tmp_path).compile("step", step, args, returns_state=True)[1]  # the new file loads


def _flip(path, n=64):
    """Inverts ``n`` bytes in the middle of file ``path``."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def _damaged_file_is_replaced(tmp_path, damage, problem):
    """Writes step's program, damages its file with ``damage(path)``, then loads it again: one warning naming the
    file and ``problem``, the file removed and traced again (the program computes step), the new file loads."""
    args = (_state(), jnp.ones(2))
    _cache(tmp_path).compile("step", step, args, returns_state=True)
    (path,) = (tmp_path / "programs").glob("step-*.jaxexport")
    damage(path)
    messages = []
    program, loaded = _cache(tmp_path).compile("step", step, args, returns_state=True, log=messages.append)
    assert not loaded and len(messages) == 1 and "\n" not in messages[0], messages
    assert messages[0].startswith(f"warning: the cached program {path} {problem}"), messages
    assert messages[0].endswith("removed it, tracing the program again"), messages
    jax.tree.map(_equal, program(*args), jax.jit(step)(*args))
    assert _cache(tmp_path).compile("step", step, args, returns_state=True)[1]  # the new file loads


def test_a_file_with_flipped_bytes_is_caught_by_its_digest(tmp_path):
    _damaged_file_is_replaced(tmp_path, _flip, "does not match the sha256 written with it")


def test_a_payload_that_deserializes_but_was_altered_is_caught_by_its_digest(tmp_path):
    """Another valid program in the file (its own payload, the old digest): it would deserialize and compute
    something else; the digest refuses it."""

    def swap(path):
        other = _cache(tmp_path / "other")
        other.compile("step", lambda s, x: step(s, x * 2), (_state(), jnp.ones(2)), returns_state=True)
        (other_path,) = (tmp_path / "other" / "programs").glob("step-*.jaxexport")
        head = path.read_bytes().partition(b"\n")[0]
        payload = other_path.read_bytes().partition(b"\n")[2]
        jax.export.deserialize(bytearray(payload))  # a program that loads
        path.write_bytes(head + b"\n" + payload)

    _damaged_file_is_replaced(tmp_path, swap, "does not match the sha256 written with it")


def test_a_file_that_does_not_deserialize_is_reported_in_one_line(tmp_path):
    import hashlib

    def garbage(path):
        payload = bytes(range(256)) * 4
        path.write_bytes(programs.HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)

    _damaged_file_is_replaced(tmp_path, garbage, "did not deserialize (")


def test_the_least_recently_used_programs_go_beyond_the_size_limit(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    cache.compile("a", lambda x: {"y": x + 1}, (jnp.ones(2),))
    cache.compile("b", lambda x: {"y": x * 2}, (jnp.ones(2),))
    names = sorted(p.name[:2] for p in (tmp_path / "programs").glob("*.jaxexport"))
    assert names == ["a-", "b-"]
    monkeypatch.setattr(programs, "MAX_BYTES", 1)  # every file is over the limit: all but the newest go
    cache.compile("c", lambda x: {"y": x * 3}, (jnp.ones(2),))
    assert [p.name[:2] for p in (tmp_path / "programs").glob("*.jaxexport")] == ["c-"]


def test_a_returned_state_must_keep_the_structure_of_the_first_argument(tmp_path):
    with pytest.raises(programs.NotExportable, match="returned a state of another structure"):
        _cache(tmp_path).compile("bad", lambda s: ((s.w,), {}), (_state(),), returns_state=True)


def test_runs_without_a_fingerprint_do_not_use_the_cache(tmp_path):
    config = TrainConfig()
    assert ProgramCache.for_run(None, config, _Env(), env_given=False) is None  # compilation cache off
    assert ProgramCache.for_run(str(tmp_path), config, _Env(), env_given=True) is None  # an env object passed
    cache = ProgramCache.for_run(str(tmp_path), config, _Env(), env_given=False)
    assert cache is not None and cache.directory == str(tmp_path / programs.SUBDIR)


def test_loading_a_program_makes_it_recently_used(tmp_path, monkeypatch):
    import os

    cache = _cache(tmp_path)
    fns = {"a": lambda x: {"y": x + 1}, "b": lambda x: {"y": x * 2}, "c": lambda x: {"y": x * 3}}
    for name in "ab":
        cache.compile(name, fns[name], (jnp.ones(2),))
    files = {p.name[0]: p for p in (tmp_path / "programs").glob("*.jaxexport")}
    os.utime(files["a"], (1e9, 1e9))
    os.utime(files["b"], (1e9 - 100, 1e9 - 100))  # b is the older file ...
    assert cache.compile("b", fns["b"], (jnp.ones(2),))[1]  # ... until it is loaded
    size = max(p.stat().st_size for p in files.values())  # the three files are about the same size
    monkeypatch.setattr(programs, "MAX_BYTES", 2 * size + 50)
    cache.compile("c", fns["c"], (jnp.ones(2),))  # one file over the limit: the least recently used goes
    assert sorted(p.name[0] for p in (tmp_path / "programs").glob("*.jaxexport")) == ["b", "c"]


def test_a_program_export_cannot_take_is_refused_with_its_reason(tmp_path):
    def with_callback(x):  # a host callback: jax.export refuses it (as it does an env's custom-call kernels)
        return {"y": jax.pure_callback(lambda v: np.asarray(v) * 2, jax.ShapeDtypeStruct((2,), jnp.float32), x)}

    with pytest.raises(programs.NotExportable, match="the cb program cannot be exported"):
        _cache(tmp_path).compile("cb", with_callback, (jnp.ones(2),))
    assert not (tmp_path / "programs").exists() or not list((tmp_path / "programs").iterdir())


class CallbackLineEnv(_line_env.LineEnv):
    """The line env with its reward passed through a host callback: a program jax.export cannot take."""

    def step(self, state, action):
        state = super().step(state, action)
        reward = jax.pure_callback(
            lambda r: np.asarray(r, np.float32),
            jax.ShapeDtypeStruct((), jnp.float32),
            state.reward,
            vmap_method="sequential",
        )
        return state.replace(reward=reward)


@pytest.mark.slow
def test_a_run_whose_programs_cannot_be_exported_trains_without_the_cache(tmp_path, capsys):
    from brax.envs import register_environment

    from tr_jax.run import run

    register_environment("tr_jax_test_callback_line", CallbackLineEnv)
    config = _line_env.line_config(
        3,
        env_name="tr_jax_test_callback_line",
        episode_length=50,
        num_epochs=1,
        policy_hidden=(5,),
        value_hidden=(5,),
        chunk_iterations=2,
        checkpoint_every=0,
        eval_every=0,
        eval_episodes=2,
    )
    result = run(config, run_dir=str(tmp_path / "r"), progress="lines")
    out = capsys.readouterr().out
    assert result.iteration == 3 and result.status == "finished"
    for name in ("train_chunk", "evaluate"):
        assert f"warning: the {name} program cannot be exported (" in out, out
    assert "compiling it without the program cache" in out
