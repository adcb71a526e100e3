"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks:``); not a page.

* The API reference is generated: one page per public module of ``tr_jax`` (found by walking the package, so a
  new module gets its page without editing ``mkdocs.yml``), listed under "API reference" in the nav.
* Every public name must have a docstring, or the build fails naming each one (``mkdocs build`` exits non-zero).
  Public names of a module: its ``__all__``, else the functions and classes it defines whose names do not start
  with ``_``; of a public class, its methods and properties whose names do not start with ``_``. A module whose
  name starts with ``_`` (and ``__main__``) is private.
* The nav slots of ``PENDING_PAGES`` are dropped while their file does not exist yet.
* The notebooks (``notebooks/*.ipynb``) and the result figures (``experiments/comparison/``) live outside
  ``docs/``; they are added to the site under the same paths, and the pages link to them as ``../notebooks/...``
  (a plain relative link that also works on a code host), rewritten here to the site's path.
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
OUTSIDE = ("notebooks/*.ipynb", "experiments/comparison/*.png", "experiments/comparison/*.gif")
API_NAV = "API reference"
# nav slots for pages other branches write (issues 19, 20, 22): left out of the nav until the file exists, so
# that this branch builds with --strict without placeholder files that would collide with theirs
PENDING_PAGES = ("agents.md", "startup.md", "tracking.md")


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


def on_config(config):
    missing = missing_docstrings()
    if missing:
        raise PluginError(f"{len(missing)} public names have no docstring: " + ", ".join(missing))
    docs = config["docs_dir"]
    config["nav"] = [
        entry
        for entry in config["nav"]
        if not (
            isinstance(entry, dict)
            and list(entry.values())[0] in PENDING_PAGES
            and not os.path.exists(os.path.join(docs, list(entry.values())[0]))
        )
    ]
    pages = [{name: f"api/{name}.md"} for name in public_modules()]
    for entry in config["nav"]:
        if isinstance(entry, dict) and API_NAV in entry:
            entry[API_NAV] = pages
            break
    else:
        raise PluginError(f"mkdocs.yml's nav has no {API_NAV!r} entry for the generated API pages")
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for name in public_modules():
        # a package's page shows its docstring; its members are documented on the pages of their modules
        members = "\n    options:\n      members: false" if hasattr(importlib.import_module(name), "__path__") else ""
        files.append(File.generated(config, f"api/{name}.md", content=f"# `{name}`\n\n::: {name}{members}\n"))
    for pattern in OUTSIDE:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            rel = os.path.relpath(path, ROOT)
            files.append(File(rel, ROOT, config["site_dir"], config["use_directory_urls"]))
    return files


_OUTSIDE_LINK = re.compile(r"\]\(\.\./((?:notebooks|experiments/comparison)/[^)\s]+)\)")


def on_page_markdown(markdown, page, config, files):
    return _OUTSIDE_LINK.sub(r"](\1)", markdown)
