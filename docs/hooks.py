"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks:``); not a page.

* The API reference is generated, grouped by topic on the paths users import from (``TOPICS``): one page per
  module or package there; a package's page shows every name of its ``__all__``. Every other public module of
  ``tr_jax`` (found by walking the package, so a new module gets its page without editing ``mkdocs.yml``) is
  listed under "Internals" at the end; the page of a submodule whose names its package's page shows has the
  module's docstring only.
* No Sphinx role (``:func:`x```) may reach a page: ``docs/griffe_roles.py`` turns them into cross-references,
  and the build fails naming each page where one is left.
* Every public name must have a docstring, or the build fails naming each one (``mkdocs build`` exits non-zero).
  Public names of a module: its ``__all__``, else the functions and classes it defines whose names do not start
  with ``_``; of a public class, its methods and properties whose names do not start with ``_``. A module whose
  name starts with ``_`` (and ``__main__``) is private.
* The notebooks (``notebooks/*.ipynb``) live outside ``docs/``; they are added to the site under the same paths,
  and the pages link to them as ``../notebooks/...`` (a plain relative link that also works on a code host),
  rewritten here to the site's path.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import os
import pkgutil
import re

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE = ("notebooks/*.ipynb",)
API_NAV = "API reference"
# the API reference's groups, in nav order: the import paths users write, by what they are for
TOPICS = (
    ("Overview", ("tr_jax",)),
    ("Projections", ("tr_jax.projections",)),
    ("Distributions", ("tr_jax.distributions",)),
    ("TRPL building blocks and the Flax layer", ("tr_jax.losses", "tr_jax.layers")),
    (
        "Training and runs",
        (
            "tr_jax.config",
            "tr_jax.train",
            "tr_jax.run",
            "tr_jax.hyperparams",
            "tr_jax.envs",
            "tr_jax.networks",
            "tr_jax.algorithms",
            "tr_jax.loggers",
            "tr_jax.tune",
            "tr_jax.compare",
            "tr_jax.stats",
            "tr_jax.plot",
        ),
    ),
    (
        "Trained policies",
        ("tr_jax.policy", "tr_jax.policy.acting", "tr_jax.policy.loading", "tr_jax.policy.export", "tr_jax.render"),
    ),
)
INTERNALS = "Internals"
# what a Sphinx role looks like once markdown has rendered it (``:func:`x``` -> ":func:<code>x</code>")
RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):(?:<code>|`)")


def public_modules() -> list[str]:
    """Names of the public modules of tr_jax, the package first, in walk order."""
    import tr_jax

    names = ["tr_jax"]
    for info in pkgutil.walk_packages(tr_jax.__path__, "tr_jax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _has_doc(obj: object) -> bool:
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj):
        own = obj.__dict__.get("__doc__") or ""
        # NamedTuple and dataclass write "Name(field, ...)" when the class has no docstring
        return bool(own.strip()) and not own.startswith(obj.__name__ + "(")
    return bool(doc.strip())


def public_names(module) -> list[tuple[str, object]]:
    """The public (name, object) pairs of a module that can carry a docstring (functions, classes, methods)."""
    if hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [
            n
            for n, o in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(o) or inspect.isclass(o))
            and o.__module__ == module.__name__
        ]
    out = []
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module.__name__:
            continue  # data, or re-exported (checked where it is defined)
        out.append((f"{module.__name__}.{name}", obj))
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if inspect.isfunction(value) or isinstance(value, property):
                    out.append((f"{module.__name__}.{name}.{attr}", value))
    return out


def missing_docstrings() -> list[str]:
    """Every public module, function, class and method of tr_jax without a docstring."""
    missing = []
    for name in public_modules():
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            missing.append(name)
        missing += [qual for qual, obj in public_names(module) if not _has_doc(obj)]
    return missing


def package_members(name: str) -> list[str] | None:
    """The names the page of package ``name`` shows: its ``__all__``, or None (its docstring only) for a module,
    a package without one, or one that imports its names lazily unless all of them are functions and classes
    (``tr_jax``'s own include modules; ``tr_jax.policy``'s show: its ``__init__`` imports them under
    ``if TYPE_CHECKING:`` as well, where the pages' static reader finds them)."""
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    if not hasattr(module, "__path__") or listed is None:
        return None
    objects = [getattr(module, n) for n in listed]  # (a lazy name is imported here)
    lazy = not set(listed) <= set(vars(module))
    if lazy and not all(inspect.isfunction(obj) or inspect.isclass(obj) for obj in objects):
        return None
    return list(listed)


def _shown_by_package(name: str) -> bool:
    """Whether ``name`` is a submodule of a topic package whose page shows all its public names."""
    parent = name.rsplit(".", 1)[0]
    topics = {m for _, modules in TOPICS for m in modules}
    exported = package_members(parent) if parent in topics else None
    if exported is None:
        return False
    names = [q for q, _ in public_names(importlib.import_module(name)) if q.count(".") == name.count(".") + 1]
    return bool(names) and all(qual.rsplit(".", 1)[-1] in exported for qual in names)


def api_pages() -> list[tuple[str, list[str]]]:
    """The API reference's groups: ``(title, module names)``, the topics, then the internals."""
    modules = public_modules()
    topics = {m for _, group in TOPICS for m in group}
    unknown = sorted(topics - set(modules))
    if unknown:
        raise PluginError(f"docs/hooks.py's TOPICS names modules that do not exist: {unknown}")
    internals = [m for m in modules if m not in topics]
    return [(title, list(group)) for title, group in TOPICS] + [(INTERNALS, internals)]


def on_config(config):
    missing = missing_docstrings()
    if missing:
        raise PluginError(f"{len(missing)} public names have no docstring: " + ", ".join(missing))
    nav = [{title: [{name: f"api/{name}.md"} for name in names]} for title, names in api_pages()]
    for entry in config["nav"]:
        if isinstance(entry, dict) and API_NAV in entry:
            entry[API_NAV] = nav
            break
    else:
        raise PluginError(f"mkdocs.yml's nav has no {API_NAV!r} entry for the generated API pages")
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for _, names in api_pages():
        for name in names:
            listed = package_members(name)
            if listed is not None:  # a package shows its __all__, the names it re-exports included
                members = "\n    options:\n      members: [" + ", ".join(listed) + "]"
            elif hasattr(importlib.import_module(name), "__path__") or _shown_by_package(name):
                members = "\n    options:\n      members: false"  # its docstring; the names are on other pages
            else:
                members = ""
            files.append(File.generated(config, f"api/{name}.md", content=f"# `{name}`\n\n::: {name}{members}\n"))
    for pattern in OUTSIDE:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            rel = os.path.relpath(path, ROOT)
            files.append(File(rel, ROOT, config["site_dir"], config["use_directory_urls"]))
    return files


_RAW_ROLES: list[str] = []


def on_pre_build(config):
    _RAW_ROLES.clear()


def on_post_page(output, page, config):
    found = sorted(set(RAW_ROLE.findall(output)))
    if found:
        _RAW_ROLES.append(f"{page.file.src_uri} ({len(RAW_ROLE.findall(output))}: {', '.join(found)})")
    return output


def on_post_build(config):
    if _RAW_ROLES:
        raise PluginError(
            "unrendered Sphinx roles (docs/griffe_roles.py did not convert them) in: " + "; ".join(_RAW_ROLES)
        )


_OUTSIDE_LINK = re.compile(r"\]\(\.\./((?:notebooks|experiments/comparison)/[^)\s]+)\)")


def on_page_markdown(markdown, page, config, files):
    return _OUTSIDE_LINK.sub(r"](\1)", markdown)
