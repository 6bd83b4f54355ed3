"""Velocity 1.7's operators, which Amazon API Gateway's templates run on, in place of airspeed's.

airspeed applies Python's operators, so AWS templates came out wrong or failed the request:
``"user-" + 5`` raised ``TypeError`` (Velocity concatenates: ``user-5``), ``1.5 / 2`` was ``0.0``
(floor division; Velocity ``0.75``), ``-7 / 2`` was ``-4`` and ``-7 % 2`` was ``1`` (Java's
``-3`` and ``-1``), ``7 / 0`` and ``"a" > 3`` failed the request (Velocity: null, false). What
Velocity 1.7 does (``ASTAddNode``, ``ASTMathNode``, ``MathUtils``, ``ASTGTNode`` and the like),
checked against Velocity 1.7 itself:

- ``+``: when either side is a String, both print (``String.valueOf``, ``vtl_java.java_str``) and
  join; a null side prints its own source text (``"a" + $nope`` is ``a$nope``). Two numbers add;
  anything else is null.
- ``-``, ``*``, ``/``, ``%``: two numbers, else null. Two integers divide and take the remainder
  as Java's ``long`` does (toward zero; the remainder has the dividend's sign), a decimal on
  either side makes it double arithmetic (``/`` exact, ``%`` as ``fmod``); a zero divisor is null.
- ``<``, ``<=``, ``>``, ``>=``: false unless both sides are numbers.

Booleans are not numbers in Java (Python's ``True`` is an ``int``). Equality and ``&&``/``||``
stay airspeed's. A joined string longer than ``MAX_TEXT`` fails the render: a loop doubling a
string would otherwise build gigabytes before any output bound sees it. So does an integer
past ``MAX_BITS``: Velocity widens to BigInteger, and ``#set($n = $n * $n)`` thirty times is a
2^30-bit number, seconds of multiplying on the event loop with no loop pass to stop it.

``prepare(tree)`` installs all this in a parsed template, once per plan.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import airspeed

from propylon_proxy import vtl_java

MAX_TEXT = 10 * 1024 * 1024  # as the render's output bound (vtl.MAX_OUTPUT)
# The widest integer an operator may make: about 315,000 decimal digits, far past any long or
# any number a template prints (Python refuses to print an int past 4,300 digits anyway).
MAX_BITS = 1 << 20


class TooLong(Exception):
    """A ``+`` would build a string past ``MAX_TEXT``, or an operator an integer past ``MAX_BITS``."""


def _bounded(apply: Callable[[Any, Any], Any], widest: Callable[[int, int], int]) -> Callable[[Any, Any], Any]:
    """``apply``, refused before it runs when both sides are integers and its result could be
    wider than ``MAX_BITS`` (``widest``: from the operands' bit lengths)."""

    def bounded(left: Any, right: Any) -> Any:
        if type(left) is int and type(right) is int and widest(left.bit_length(), right.bit_length()) > MAX_BITS:
            raise TooLong(f"an integer past {MAX_BITS} bits")
        return apply(left, right)

    return bounded


def _number(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def add(left: Any, right: Any, left_text: str, right_text: str) -> Any:
    """Velocity's ``+``; ``*_text`` are the operands' source texts, printed for a null side."""
    if type(left) is str or type(right) is str:
        joined_left = left_text if left is None else vtl_java.java_str(left)
        joined_right = right_text if right is None else vtl_java.java_str(right)
        if len(joined_left) + len(joined_right) > MAX_TEXT:
            raise TooLong(f"a string past {MAX_TEXT} characters")
        return joined_left + joined_right
    if _number(left) and _number(right):
        return _plus(left, right)
    return None


def _arithmetic(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def arithmetic(left: Any, right: Any) -> Any:
        if _number(left) and _number(right):
            return apply(left, right)
        return None

    return arithmetic


def _divide(left: int | float, right: int | float) -> Any:
    if right == 0:
        return None
    if type(left) is int and type(right) is int:
        quotient = abs(left) // abs(right)  # exact for any size, then Java's sign
        return -quotient if (left < 0) != (right < 0) else quotient
    return float(left) / float(right)


def _modulo(left: int | float, right: int | float) -> Any:
    if right == 0:
        return None
    if type(left) is int and type(right) is int:
        remainder = abs(left) % abs(right)
        return -remainder if left < 0 else remainder
    return math.fmod(left, right)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def ordered(left: Any, right: Any) -> bool:
        return _number(left) and _number(right) and compare(left, right)

    return ordered


# airspeed's operator (``BinaryOperator.apply_to``) -> Velocity's; ``+`` is ``add``, which the
# expression calls with its operands' texts.
_plus = _bounded(operator.add, lambda a, b: max(a, b) + 1)
_VELOCITY: dict[Callable[[Any, Any], Any], Callable[..., Any]] = {
    operator.add: add,
    operator.sub: _arithmetic(_bounded(operator.sub, lambda a, b: max(a, b) + 1)),
    operator.mul: _arithmetic(_bounded(operator.mul, operator.add)),
    operator.floordiv: _arithmetic(_divide),
    operator.mod: _arithmetic(_modulo),
    operator.gt: _ordered(operator.gt),
    operator.ge: _ordered(operator.ge),
    operator.lt: _ordered(operator.lt),
    operator.le: _ordered(operator.le),
}


def prepare(tree: Iterable[Any]) -> None:
    """Give a parsed template's (``tree``: its elements, ``propylon_config.templates.elements``)
    operators Velocity's meaning, and its expressions an evaluation that knows each operand's
    source text.

    airspeed's parenthesised expressions and ``#if``/``#elseif`` conditions hold their
    expression's ``calculate`` as a bound method taken at parse time, so those are pointed at
    the new one after every expression has it."""
    elements = list(tree)
    for element in elements:
        if isinstance(element, airspeed.BinaryOperator):
            element.apply_to = _VELOCITY.get(element.apply_to, element.apply_to)
        elif isinstance(element, airspeed.Expression) and len(element.expression) > 1:
            element.calculate = _calculator(element)
    for element in elements:
        bound = vars(element).get("calculate")
        owner = getattr(bound, "__self__", None)
        if isinstance(owner, airspeed.Expression) and owner is not element:
            element.calculate = owner.calculate


def _calculator(expression: Any) -> Callable[..., Any]:
    """``Expression.calculate`` for one expression with operators: airspeed's precedence (a
    stack of operators), operands evaluated left to right (as Java does), and each intermediate
    value kept with the span of source text it came from, for ``add``."""
    terms: list[Any] = expression.expression
    text: str = expression._full_text

    def calculate(namespace: Any, loader: Any) -> Any:
        values: list[Any] = [terms[0]]
        spans: list[tuple[int, int]] = [(terms[0].start, terms[0].end)]
        operators: list[Any] = []
        index = 1
        while index < len(terms):
            if not operators or terms[index].greater_precedence_than(operators[-1]):
                operand = terms[index + 1]
                operators.append(terms[index])
                values.append(operand)
                spans.append((operand.start, operand.end))
                index += 2
            else:
                _reduce(operators, values, spans, text, namespace, loader)
        while operators:
            _reduce(operators, values, spans, text, namespace, loader)
        return _value(values[0], namespace, loader)

    return calculate


def _value(term: Any, namespace: Any, loader: Any) -> Any:
    return term.calculate(namespace, loader) if isinstance(term, airspeed.Value) else term


def _reduce(
    operators: list[Any], values: list[Any], spans: list[tuple[int, int]], text: str, namespace: Any, loader: Any
) -> None:
    """Apply the top operator to the top two values (replaced by the result and their span)."""
    apply = operators.pop().apply_to
    right, left = values.pop(), values.pop()
    (right_start, right_end), (left_start, left_end) = spans.pop(), spans.pop()
    left = _value(left, namespace, loader)
    right = _value(right, namespace, loader)
    if apply is add:
        result = add(left, right, text[left_start:left_end], text[right_start:right_end])
    else:
        result = apply(left, right)
    values.append(result)
    spans.append((left_start, right_end))
