"""Safe price expressions: ``market + 0.0181``, ``-max(market - 0.015, 0.5 * market)``, never eval.

Grammar: decimal constants, names, ``+ - * /``, unary ``-``/``+``, parentheses, and the functions
``min(a, b, ...)`` and ``max(a, b, ...)``. The text is parsed by Python's own parser into a syntax
tree, every node is checked against that grammar, and numbers are taken from the source text as
exact decimals (``0.1`` is one tenth, not a binary float). Evaluation is exact decimal arithmetic
(34 significant digits); the caller rounds once at the end.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, DivisionByZero, InvalidOperation, localcontext

FUNCTIONS = ("min", "max")
_PLAIN_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")
PRECISION = 34
MAX_LENGTH = 1000


class ExpressionError(ValueError):
    """An expression that is not in the grammar, names something unknown, or cannot be evaluated."""


@dataclass(frozen=True)
class Expression:
    """A checked expression: its text, its tree and the names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]
    constants: dict[int, Decimal] = field(default_factory=dict)  # id(node) -> its exact value, read once
    #: Results already rounded by callers, keyed by what they depend on (see compose.evaluate_micro).
    memo: dict[tuple[object, ...], int] = field(default_factory=dict, compare=False, repr=False)

    def evaluate(self, env: Mapping[str, Decimal]) -> Decimal:
        """The exact value for the names' values in ``env`` (every name must be present)."""
        with localcontext() as ctx:
            ctx.prec = PRECISION
            ctx.traps[DivisionByZero] = True
            ctx.traps[InvalidOperation] = True
            try:
                return _eval(self.tree.body, env, self.constants)
            except (DivisionByZero, InvalidOperation):
                shown = ", ".join(f"{k} = {env[k]}" for k in sorted(self.names))
                raise ExpressionError(f"{self.text!r} divides by zero ({shown})") from None

    def is_constant(self) -> bool:
        return not self.names


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse(text: str, known: set[str] | frozenset[str]) -> Expression:
    """Parse and check ``text``; ``known`` are the names it may read (an unknown one is an error)."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an empty expression; write a number such as 0.0181 or a formula")
    source = text.strip()
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"an expression of {len(source)} characters; at most {MAX_LENGTH} are allowed")
    try:
        tree = ast.parse(source, mode="eval")
    except (RecursionError, MemoryError):
        raise ExpressionError(f"{source[:40]!r}...: nested too deeply") from None
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        raise ExpressionError(f"{source!r} is not a valid expression (at character {col + 1}: {exc.msg})") from None
    names: set[str] = set()
    try:
        _check(tree.body, source, known, names)
    except RecursionError:
        raise ExpressionError(f"{source[:40]!r}...: nested too deeply") from None
    constants = {id(node): Decimal(ast.get_source_segment(source, node) or str(node.value))
                 for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    return Expression(source, tree, frozenset(names), constants)


def _check(node: ast.AST, src: str, known: set[str] | frozenset[str], names: set[str]) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, src, known, names)
        _check(node.right, src, known, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand, src, known, names)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{src!r}: {ast.get_source_segment(src, node)!r} is not a number")
        segment = ast.get_source_segment(src, node) or ""
        if not _PLAIN_NUMBER.fullmatch(segment):
            raise ExpressionError(f"{src!r}: write {segment!r} as a plain decimal number such as 0.0181")
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ExpressionError(f"{src!r}: {node.id} is a function; call it as {node.id}(a, b)")
        if node.id not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise ExpressionError(f"{src!r}: unknown name {node.id!r} (known: {choices})")
        names.add(node.id)
    elif isinstance(node, ast.Call):
        fname = node.func.id if isinstance(node.func, ast.Name) else None
        if fname not in FUNCTIONS:
            raise ExpressionError(f"{src!r}: only min(...) and max(...) may be called")
        if node.keywords or len(node.args) < 2:
            raise ExpressionError(f"{src!r}: {fname} takes two or more values, e.g. {fname}(market, 0)")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise ExpressionError(f"{src!r}: no * arguments")
            _check(arg, src, known, names)
    else:
        what = ast.get_source_segment(src, node) or type(node).__name__
        raise ExpressionError(
            f"{src!r}: {what!r} is not allowed (numbers, names, + - * /, parentheses, min, max)"
        )


def _eval(node: ast.AST, env: Mapping[str, Decimal], constants: dict[int, Decimal]) -> Decimal:
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env, constants), _eval(node.right, env, constants)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        return a / b
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env, constants)
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.Constant):
        return constants[id(node)]
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Call):
        values = [_eval(a, env, constants) for a in node.args]
        return min(values) if node.func.id == "min" else max(values)  # type: ignore[attr-defined]
    raise ExpressionError(f"cannot evaluate {type(node).__name__}")  # unreachable after _check
