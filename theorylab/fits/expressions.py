"""Safe parsing of user-defined law expressions into sympy, without ``eval``.

``parse_expression("E + A * N**-alpha", variables=("N",))`` reads the text with Python's
:mod:`ast` (``mode="eval"``), accepts only numbers, names, ``+ - * / **``, unary signs and calls to a
short list of mathematical functions, and builds the sympy expression node by node.  Nothing is
ever evaluated as Python, so ``__import__('os')``, attribute access (``N.__class__``), subscripts,
lambdas, comprehensions and keyword arguments are rejected with a clear ValueError.  Names that
are not variables are the law's parameters; an unknown function name is an error.
"""
from __future__ import annotations

import ast
import re

import sympy as sp

#: functions an expression may call, by name
FUNCTIONS: dict[str, sp.Function] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "tanh": sp.tanh, "sigmoid": lambda z: 1 / (1 + sp.exp(-z)),
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_BINARY = {ast.Add: sp.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sp.Mul, ast.Div: lambda a, b: a / b,
           ast.Pow: sp.Pow}
MAX_LENGTH = 2000


def parse_expression(text: str, *, variables: tuple[str, ...],
                     parameters: tuple[str, ...] | None = None) -> tuple[sp.Expr, tuple[str, ...]]:
    """Parse ``text`` into a sympy expression; return it with its parameter names (sorted).

    ``variables`` are the input columns (each must appear).  With ``parameters`` given, any other
    name is rejected as unknown; otherwise every non-variable name is a parameter.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_LENGTH} characters")
    text = text.strip()
    if text.count("=") == 1 and "==" not in text:  # allow "L = E + A*N**-alpha"
        text = text.split("=", 1)[1].strip()
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"the expression {text!r} does not parse: {exc.msg}") from None
    names: set[str] = set()
    expr = _build(tree.body, names, text)
    for v in variables:
        if v not in names:
            raise ValueError(f"variable {v!r} does not appear in the expression {text!r}")
    found = tuple(sorted(names - set(variables)))
    if parameters is not None:
        unknown = sorted(set(found) - set(parameters))
        if unknown:
            raise ValueError(f"unknown name(s) {unknown} in the expression {text!r}; "
                             f"variables are {list(variables)}, parameters {list(parameters)}")
        found = tuple(p for p in parameters if p in names)
    if not found:
        raise ValueError(f"the expression {text!r} has no parameters to fit")
    return expr, found


def _build(node: ast.AST, names: set[str], text: str) -> sp.Expr:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
    if isinstance(node, ast.Name):
        if not _NAME.match(node.id) or node.id in FUNCTIONS:
            raise ValueError(f"name {node.id!r} is not allowed in an expression ({text!r})")
        names.add(node.id)
        return sp.Symbol(node.id, real=True)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_build(node.left, names, text), _build(node.right, names, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _build(node.operand, names, text)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ValueError(f"unknown function {what!r} in {text!r}; allowed: {sorted(FUNCTIONS)}")
        if node.keywords or len(node.args) != 1:
            raise ValueError(f"function {node.func.id!r} takes exactly one positional argument ({text!r})")
        return FUNCTIONS[node.func.id](_build(node.args[0], names, text))
    if isinstance(node, ast.Attribute):
        raise ValueError(f"attribute access is not allowed in an expression ({text!r})")
    raise ValueError(f"{type(node).__name__} is not allowed in an expression ({text!r}); "
                     "use numbers, names, + - * / ** and " + ", ".join(sorted(FUNCTIONS)))
