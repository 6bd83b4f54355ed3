"""What a mapping template can reach: JSON values and the variables AWS defines, never Python.

airspeed resolves ``$a.b`` by trying ``a["b"]`` and then ``getattr(a, "b")`` on whatever ``a``
is, so ``$input.__init__.__globals__`` walked from a template into the proxy's modules and
from there to ``os``: an Api's author could run commands inside the gateway, which holds every
Api's secrets. Amazon API Gateway runs templates in Java Velocity's sandbox; ``sandbox(tree)``
gives every name lookup of a parsed template (airspeed's ``NameOrCall``) a resolver that keeps
airspeed's order (a map's key, then a method, then the Java-style methods ``vtl_java``
registers) and allows only:

- on a map (a JSON object, ``$context``, the template's own variables): its keys, as before;
- on a JSON value (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``, and the
  ``tuple``/``bytes``/dict views Python's methods on them return): its methods, except names
  starting with ``_`` and ``format``/``format_map`` (a format string reads attributes of its
  arguments: ``"{0.__class__}"``);
- on the objects the proxy hands templates (``$input``, ``$util``): only the names each
  ``publish``-es.

Anything else is not found, and the reference prints as written, as Velocity prints a
reference it cannot resolve. Arithmetic (``-``, ``*``, ``/``, ``%``) takes two numbers, as in
Velocity, so a string cannot be repeated or %-formatted into gigabytes: ``vtl_math`` gives every
operator Velocity's meaning (``vtl.compile`` runs both). ``#evaluate``,
``#include`` and ``#parse``, refused by the compiler (``propylon_config.templates``), fail the
render here too if a tree ever holds one.

The sandbox bounds what a template reaches, not how big what it builds gets: the resolver hands
every method call to the render's ``calls`` and a ``$macro()`` used as a value its ``stream``,
where ``vtl`` bounds them (``vtl._calls``: ``$s.center(1000000000)`` is refused before it runs).

The resolver is also cheaper than airspeed's: it looks a map up with ``get`` and does not
subscript what is not a map, so ``$util.escapeJavaScript(...)`` raises and catches no
``TypeError`` per call (measured with the sandbox's tests: see docs/templates.md, "Cost").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import airspeed

from propylon_config import templates

# The value types of JSON documents and of what their methods return: their public methods are
# a template's to call (``$s.replace('a', 'b')``, ``$m.keys()``).
_JSON_TYPES = frozenset(
    {str, int, float, bool, list, tuple, dict, bytes, type({}.keys()), type({}.values()), type({}.items())}
)
_NEVER = frozenset({"format", "format_map"})
# type -> the attribute names a template may read on its objects (``publish``).
_PUBLISHED: dict[type, frozenset[str]] = {}
# airspeed's table of extra methods per type, which vtl_java fills with Java's.
_EXTRA: dict[type, dict[str, Callable[..., Any]]] = getattr(airspeed, "__additional_methods__")  # noqa: B009


class Refused(Exception):
    """A template used a directive the gateway does not run."""


def publish(kind: type, names: Iterable[str]) -> None:
    """Let templates read ``names`` (and only those) on objects of ``kind``."""
    _PUBLISHED[kind] = frozenset(names)


def attribute(value: Any, name: str) -> Any:
    """``getattr(value, name)`` when a template may see it; None when not (or when absent)."""
    if name[:1] == "_":
        return None
    kind = type(value)
    if kind in _JSON_TYPES:
        if name in _NEVER:
            return None
    elif name not in _PUBLISHED.get(kind, ()):
        return None
    return getattr(value, name, None)


# How a resolved method is called: ``call(receiver, method, arguments)``, chosen once per
# method name by ``calls(name)``. The render (``vtl.compile``) passes calls that bound what a
# method may build; alone a call is a plain one.
Call = Callable[[Any, Callable[..., Any], list[Any]], Any]


def _plain_call(receiver: Any, method: Callable[..., Any], arguments: list[Any]) -> Any:
    return method(*arguments)


def _plain_calls(name: str) -> Call:
    return _plain_call


def sandbox(
    tree: Iterable[Any],
    calls: Callable[[str], Call] = _plain_calls,
    stream: Callable[[], Any] = airspeed.StoppableStream,
) -> None:
    """Give every name lookup of a parsed template (``tree``: its elements,
    ``propylon_config.templates.elements``) the sandbox's resolver. Every method it calls goes
    through ``calls(name)``, and a ``#macro``/``#define`` called as ``$name(...)`` writes its text
    into a new ``stream()``: the two places where a lookup builds a value, which the render bounds."""
    for element in tree:
        if isinstance(element, airspeed.NameOrCall):
            element.calculate = _resolver(element, calls(element.name), stream)
        elif type(element) in templates.REFUSED_DIRECTIVES:
            element.evaluate_raw = _refuse


def _refuse(stream: Any, namespace: Any, loader: Any) -> None:
    raise Refused("the template uses a directive the gateway does not run")


def _resolver(element: Any, call: Call, new_stream: Callable[[], Any]) -> Callable[[Any, Any, Any], Any]:
    """``NameOrCall.calculate`` for one element, with the sandbox's rules (module docstring)."""
    name: str = element.name
    parameters = element.parameters
    index = element.index

    def calculate(current: Any, loader: Any, top_namespace: Any) -> Any:
        result: Any = None
        if current.__class__ is dict:
            result = current.get(name)
        elif isinstance(current, dict):  # airspeed's LocalNamespace: its lookup walks the scopes
            try:
                result = current[name]
            except KeyError:
                result = None
        if result is None and not isinstance(current, airspeed.LocalNamespace):
            result = attribute(current, name)
        if result is None:
            extra = _EXTRA.get(current.__class__)
            method = extra.get(name) if extra else None
            if method is None:
                return None
            result = _bound(method, current)
        if isinstance(result, airspeed._FunctionDefinition):  # a #macro called as $name(...)
            arguments = parameters.calculate(top_namespace, loader) if parameters is not None else []
            stream = new_stream()
            result.execute_function(stream, top_namespace, arguments, loader)
            return stream.getvalue()
        if parameters is not None:
            return call(current, result, parameters.calculate(top_namespace, loader))
        if index is not None:
            key = index.calculate(top_namespace, loader)
            if isinstance(result, list) and not isinstance(key, int):
                raise ValueError(f"expected integer for array index, got {key!r}")
            try:
                return result[key]
            except (LookupError, TypeError, ValueError):
                return None
        return result

    return calculate


def _bound(method: Callable[..., Any], value: Any) -> Callable[..., Any]:
    def call(*arguments: Any) -> Any:
        return method(value, *arguments)

    return call
