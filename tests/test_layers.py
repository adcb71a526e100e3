"""The package's layers (docs/getting-started.md, "Code layout and layers": math -> RL core -> trainer -> runs ->
tools, and inside the RL core its modules in order): no module imports one of a higher layer at run time
(imports under ``if TYPE_CHECKING:`` are annotations only and are not counted; imports inside functions are)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tr_jax"

# the lowest layer a module may live in; a package name covers its submodules. Inside the RL core (1) the
# modules are ordered too: 1.0 imports only math, 1.1 builds on 1.0, the config asks the algorithms what they
# read (1.2), the hyperparameters are made from a config (1.3).
LAYERS = {
    # math (and infrastructure with no tr_jax dependency above it)
    "choices": 0,
    "linalg": 0,
    "distributions": 0,
    "projections": 0,
    "parallel": 0,
    "stats": 0,
    # RL core
    "losses": 1.0,
    "networks": 1.0,
    "envs": 1.0,
    "trpl": 1.1,
    "layers": 1.1,
    "algorithms": 1.1,
    "acting": 1.1,
    "config": 1.2,
    "hyperparams": 1.3,
    # trainer
    "train": 2,
    # runs
    "run": 3,
    "rundir": 3,
    "checkpoint": 3,
    "progress": 3,
    "loggers": 3,
    "tune": 3,
    "inference": 3,
    "compile_cache": 3,
    "programs": 3,
    # tools
    "compare": 4,
    "plot": 4,
    "render": 4,
    "gif": 4,
    "export": 4,
    "cli": 4,
    "__main__": 4,
}


def _layer(module: str) -> float:
    """The layer of ``tr_jax.<module>`` (its top-level name decides); KeyError for a module not placed yet."""
    return LAYERS[module.split(".")[0]]


def _runtime_imports(tree: ast.Module) -> set[str]:
    """The tr_jax modules (dotted, without ``tr_jax.``) that ``tree`` imports outside ``if TYPE_CHECKING:``."""
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tr_jax":
            base = node.module.split(".", 1)[1] if "." in node.module else ""
            for alias in node.names:  # `from tr_jax import run` names a module; `from tr_jax.x import f` does not
                out.add(f"{base}.{alias.name}".strip(".") if not base else base)
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("tr_jax.")}
    return out


def _modules() -> list[tuple[str, pathlib.Path]]:
    return sorted(
        (".".join(p.relative_to(PACKAGE).with_suffix("").parts), p)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_module_has_a_layer():
    unplaced = sorted({m.split(".")[0] for m, _ in _modules()} - set(LAYERS))
    assert not unplaced, f"modules without a layer in tests/test_layers.py: {unplaced}"


def _upward(module: str, tree: ast.Module) -> list[str]:
    """The tr_jax modules of a higher layer than ``module`` that ``tree`` (its source) imports at run time."""
    return sorted(dep for dep in _runtime_imports(tree) if dep and _layer(dep) > _layer(module))


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_no_upward_import(module, path):
    module = module.removesuffix(".__init__")
    upward = _upward(module, ast.parse(path.read_text()))
    assert not upward, f"tr_jax.{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_the_check_sees_an_upward_import():
    tree = ast.parse("from tr_jax.run import run\nimport tr_jax.cli\nfrom tr_jax import compare\n")
    assert _runtime_imports(tree) == {"run", "cli", "compare"}
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tr_jax.train import Trainer\n")
    assert _runtime_imports(guarded) == set()


def test_the_check_orders_the_rl_core():
    """Inside layer 1 as well: the networks may not import the config, the config may import the algorithms."""
    assert _upward("networks", ast.parse("def f():\n    from tr_jax.config import validate\n")) == ["config"]
    assert _upward("algorithms.ppo", ast.parse("from tr_jax import config\n")) == ["config"]
    assert _upward("config", ast.parse("from tr_jax.algorithms import reads\nfrom tr_jax import choices\n")) == []
