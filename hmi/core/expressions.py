"""Small boolean expressions over tags, e.g. `cnc01.spindle_speed < 10 and not cnc01.door_open`.

Used where the project file states a condition (an alarm's suppression by design). The
text is parsed once with Python's own parser and only a tiny safe subset is accepted:
tag names (`machine.signal`), numbers, true/false, comparisons, `and`, `or`, `not`,
parentheses, and unary minus. Anything else (calls, attributes of values, subscripts)
is refused with a message that says what is allowed. Evaluation takes a lookup function,
so the expression itself holds no values and no I/O.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

from hmi.core.tags import TAG_NAME_RE

Lookup = Callable[[str], float]

_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    """The text is not an expression this module accepts; the message says why."""


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    text: str
    tags: tuple[str, ...]  # every tag the expression reads, in order of first use
    _node: ast.expr

    def evaluate(self, lookup: Lookup) -> bool:
        """True or False; a comparison with a missing value (NaN) is False."""
        return bool(_eval(self._node, lookup))


def parse_expression(text: str) -> Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None
    tags: list[str] = []
    _check(tree.body, tags)
    return Expression(text, tuple(dict.fromkeys(tags)), tree.body)


def _tag_name(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    parts.append(node.id)
    name = ".".join(reversed(parts))
    return name if TAG_NAME_RE.match(name) else None


def _check(node: ast.expr, tags: list[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, tags)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check(node.operand, tags)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ExpressionError(f"operator {type(op).__name__} is not allowed (use <, <=, >, >=, ==, !=)")
        for value in (node.left, *node.comparators):
            _check(value, tags)
    elif isinstance(node, ast.Attribute):
        name = _tag_name(node)
        if name is None:
            raise ExpressionError(f"{ast.unparse(node)!r} is not a tag name (machine.signal in lower snake case)")
        tags.append(name)
    elif _is_literal(node):
        return
    elif isinstance(node, ast.Name):
        raise ExpressionError(f"{node.id!r} is not a tag name (machine.signal) nor true/false")
    else:
        raise ExpressionError(
            f"{ast.unparse(node)!r} is not allowed: use tag names, numbers, comparisons, and, or, not"
        )


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool | int | float)
    return isinstance(node, ast.Name) and node.id in ("true", "false")


def _eval(node: ast.expr, lookup: Lookup) -> float | bool:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_truth(_eval(v, lookup)) for v in node.values)
        return any(_truth(_eval(v, lookup)) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup)
        return (not _truth(value)) if isinstance(node.op, ast.Not) else -float(value)
    if isinstance(node, ast.Compare):
        left = float(_eval(node.left, lookup))
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = float(_eval(right_node, lookup))
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Attribute):
        return lookup(_tag_name(node) or "")
    if isinstance(node, ast.Constant):
        return node.value  # type: ignore[return-value]
    if isinstance(node, ast.Name):
        return node.id == "true"
    raise ExpressionError(f"cannot evaluate {ast.unparse(node)!r}")  # unreachable after _check


def _truth(value: float | bool) -> bool:
    """A bare tag is true when its value is non-zero; a missing value (NaN) is false."""
    if isinstance(value, bool):
        return value
    return not math.isnan(value) and value != 0
