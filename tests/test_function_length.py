"""No function in ``tr_jax/`` is longer than 80 lines of code, except the ``make_*`` closure factories.

A newcomer reads a function in one screen: anything longer is split into named steps. The closure factories
(``make_trainer``, ``make_trpl``, ...) are exempt, with every function defined inside them: their nested steps are
what the jitted program is built from, and each of those is short. Lines of code: the body's lines without its
docstring, blank lines and comment-only lines.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tr_jax"
MAX_LINES = 80


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    """Lines of code of ``fn``'s body (1-based ``source`` lines), without docstring, blanks and comments."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            body = body[1:]
    if not body:
        return 0
    lines = source[body[0].lineno - 1 : body[-1].end_lineno]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _long_functions(tree: ast.AST, source: list[str], limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function over ``limit`` lines in ``tree`` outside a ``make_*`` factory."""
    out = []

    def walk(node: ast.AST, exempt: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inside = exempt or child.name.startswith("make_")
                n = _code_lines(child, source)
                if n > limit and not inside:
                    out.append((child.name, n))
                walk(child, inside)
            else:
                walk(child, exempt)

    walk(tree, False)
    return out


def test_the_rule_counts_code_lines_and_exempts_factories():
    body = "\n".join(f"    x{i} = {i}  # c" for i in range(5))
    inner = body.replace("    ", "        ")
    src = f'def f():\n    """doc\n\n    more"""\n    # comment\n\n{body}\n\ndef make_g():\n    def h():\n{inner}\n'
    lines = src.splitlines()
    tree = ast.parse(src)
    assert _long_functions(tree, lines, limit=4) == [("f", 5)]  # make_g and the h inside it are exempt
    assert _long_functions(tree, lines, limit=5) == []
    nested = "class C:\n    def m(self):\n" + "\n".join(f"        y{i} = {i}" for i in range(3)) + "\n"
    assert _long_functions(ast.parse(nested), nested.splitlines(), limit=2) == [("m", 3)]


def test_no_function_over_80_lines_of_code():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        for name, n in _long_functions(ast.parse(source), source.splitlines()):
            long.append(f"{path.relative_to(PACKAGE.parent)}: {name} ({n} lines)")
    assert not long, "split into named steps: " + "; ".join(long)
