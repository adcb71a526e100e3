"""Griffe extension of the documentation site (``mkdocs.yml``: mkdocstrings' ``extensions``); not a page.

tr_jax's docstrings name other objects with Sphinx roles (``:func:`run```, ``:class:`~tr_jax.train.Trainer```),
which read well in ``help()`` but which mkdocstrings does not render. This extension rewrites each role, before
the docstrings are parsed, into an mkdocstrings cross-reference (``[`run`][tr_jax.run.run]``) when its target
is a public object of tr_jax (looked up as written, then relative to the docstring's object and its parents),
and into plain code otherwise (a private helper, an undocumented constant, an object of another package).
``~`` shows the last name only, as in Sphinx. The site's hook (``docs/hooks.py``) fails the build if a role is
left in a page.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`(~?)([^`<>]+)`")
PACKAGE = "tr_jax"


def _lookup(pkg: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    if path == PACKAGE:
        return pkg
    if not path.startswith(PACKAGE + "."):
        return None
    try:
        return pkg[path[len(PACKAGE) + 1 :]]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def resolve(pkg: griffe.Module, obj: griffe.Object | griffe.Alias, target: str) -> str | None:
    """The full path of ``target`` as named in ``obj``'s docstring, or None when it is not a public tr_jax object."""
    target = target.lstrip(".").removesuffix("()")
    candidates = [target, f"{PACKAGE}.{target}"]
    scope: Any = obj
    while scope is not None:  # relative to the object, its class, its module, the parent packages
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for path in candidates:
        found = _lookup(pkg, path)
        if found is not None:
            private = any(part.startswith("_") for part in path.split("."))
            # mkdocstrings renders (and anchors) an attribute only when it has a docstring
            shown = not (found.is_attribute and found.docstring is None)
            return path if shown and not private else None
    return None


def convert(pkg: griffe.Module, obj: griffe.Object | griffe.Alias, text: str) -> str:
    """``text`` with every Sphinx role replaced by a cross-reference or by code."""

    def one(match: re.Match) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
        path = resolve(pkg, obj, target)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return ROLE.sub(one, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring in the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        stack: list[Any] = [pkg]
        seen = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(pkg, obj, obj.docstring.value)
            stack.extend(obj.members.values())
