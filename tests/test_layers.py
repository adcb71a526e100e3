"""The package's layers (docs/getting-started.md, "Code layout and layers": math -> RL core -> trainer -> runs ->
tools): no module imports one of a higher layer at run time (imports under ``if TYPE_CHECKING:`` are
annotations only and are not counted)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tr_jax"

# the lowest layer a module may live in; a package name covers its submodules
LAYERS = {
    # math (and infrastructure with no tr_jax dependency above it)
    "linalg": 0,
    "distributions": 0,
    "projections": 0,
    "parallel": 0,
    "stats": 0,
    # RL core
    "config": 1,
    "hyperparams": 1,
    "networks": 1,
    "envs": 1,
    "algorithms": 1,
    "losses": 1,
    "trpl": 1,
    "layers": 1,
    "acting": 1,
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


def _layer(module: str) -> int:
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


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_no_upward_import(module, path):
    module = module.removesuffix(".__init__")
    upward = sorted(
        dep for dep in _runtime_imports(ast.parse(path.read_text())) if dep and _layer(dep) > _layer(module)
    )
    assert not upward, f"tr_jax.{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_the_check_sees_an_upward_import():
    tree = ast.parse("from tr_jax.run import run\nimport tr_jax.cli\nfrom tr_jax import compare\n")
    assert _runtime_imports(tree) == {"run", "cli", "compare"}
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tr_jax.train import Trainer\n")
    assert _runtime_imports(guarded) == set()
