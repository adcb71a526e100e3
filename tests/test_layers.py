"""The package's layers (docs/getting-started.md, "Code layout and layers": math -> RL core -> trainer -> runs ->
tools, and inside the RL core its modules in order): no module imports one of a higher layer at run time
(imports under ``if TYPE_CHECKING:`` are annotations only and are not counted; imports inside functions are)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tr_jax"

# the lowest layer a module may live in; a package name covers its submodules, unless a submodule has its own
# entry (the longest matching name decides). Inside the RL core (1) the modules are ordered too: 1.0 imports only
# math, 1.1 builds on 1.0, the config asks the algorithms what they read (1.2), the hyperparameters are made from
# a config (1.3). A package whose submodules live in different layers (``policy``) stands, as a name imported
# from, at its highest submodule's layer; its ``__init__`` imports none of them at run time (it loads each name
# on first use), so that importing its lower submodules does not load the higher ones
# (test_a_package_across_layers_loads_its_modules_lazily). The deprecated alias modules (``acting``,
# ``inference``, ``export``, ``trpl``) live in the layer of the module they re-export.
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
    "policy.acting": 1.1,
    "acting": 1.1,  # deprecated alias of policy.acting
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
    "policy.loading": 3,
    "inference": 3,  # deprecated alias of policy.loading
    "compile_cache": 3,
    "programs": 3,
    # tools
    "compare": 4,
    "plot": 4,
    "render": 4,
    "gif": 4,
    "policy": 4,  # the package's names (its __init__ imports none at run time)
    "policy.export": 4,
    "export": 4,  # deprecated alias of policy.export
    "cli": 4,
    "__main__": 4,
}


def _layer(module: str) -> float:
    """The layer of ``tr_jax.<module>`` (its longest name in ``LAYERS``, itself or a package above it, decides);
    KeyError for a module not placed yet."""
    parts = module.split(".")
    return next(LAYERS[name] for k in range(len(parts), 0, -1) if (name := ".".join(parts[:k])) in LAYERS)


def _is_module(dotted: str) -> bool:
    """Whether ``tr_jax.<dotted>`` (``".x"`` for ``tr_jax.x``) is a module or package of tr_jax's source."""
    path = PACKAGE.joinpath(*dotted.strip(".").split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
            for alias in node.names:  # `from tr_jax import run` and `from tr_jax.policy import acting` name modules
                out.add(f"{base}.{alias.name}".strip(".") if _is_module(f"{base}.{alias.name}") else base)
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
    stale = sorted(name for name in LAYERS if not _is_module(name))
    assert not stale, f"tests/test_layers.py places modules that do not exist: {stale}"


def test_a_package_across_layers_loads_its_modules_lazily():
    """Importing ``tr_jax.policy.acting`` runs ``tr_jax/policy/__init__.py`` first: were its names imported there,
    the trainer would load the export module (a tool) through it."""
    split = sorted({name.rsplit(".", 1)[0] for name in LAYERS if "." in name})
    assert "policy" in split
    for package in split:
        tree = ast.parse((PACKAGE / package.replace(".", "/") / "__init__.py").read_text())
        assert not _runtime_imports(tree), f"tr_jax/{package}/__init__.py imports at run time: {_runtime_imports(tree)}"


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


def test_the_check_places_the_policy_modules_one_by_one():
    """The trainer may import the acting module, not the policy package's names (they include the tools')."""
    assert _upward("train", ast.parse("from tr_jax.policy import acting\nfrom tr_jax.policy.acting import f\n")) == []
    assert _upward("train", ast.parse("from tr_jax.policy import load_policy\n")) == ["policy"]
    assert _upward("policy.acting", ast.parse("from tr_jax.policy import loading\n")) == ["policy.loading"]
    assert _upward("policy.loading", ast.parse("from tr_jax.policy.export import export_policy\n")) == ["policy.export"]
