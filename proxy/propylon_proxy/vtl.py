"""Rendering mapping templates (VTL) the way Amazon API Gateway does (DESIGN.md §2.5).

The engine is airspeed (the same one ``propylon_config.templates`` checks with); this module
only supplies AWS's variables: ``$input`` (``body``, ``json(path)``, ``path(path)``,
``params()``, ``params(name)``), ``$util`` (escapeJavaScript, parseJson, urlEncode, urlDecode,
base64Encode, base64Decode), ``$context`` and ``$stageVariables``. JSONPath is jsonpath-ng
(a maintained library), so ``$``, ``$.a.b``, ``$.a[0]``, ``$['a']`` and ``[*]`` mean what
they mean there. A template is compiled once per plan (``compile``); anything that goes wrong
while rendering, including output past ``MAX_OUTPUT`` (10 MiB), a value past ``MAX_VALUE`` or
``MAX_ALLOCATED`` (``_calls``) or a render past its budget (``_Budget``), is one ``RenderError``
that the integration turns into 500 API_CONFIGURATION_ERROR before anything is sent upstream.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import airspeed
import jsonpath_ng
import jsonpath_ng.exceptions

from propylon_config import templates
from propylon_proxy import vtl_java, vtl_math, vtl_sandbox

MAX_OUTPUT = 10 * 1024 * 1024
MAX_ITERATIONS = 1000  # #foreach passes in total over one render, as AWS limits a template
MAX_SECONDS = 0.5  # of one render, checked at each #foreach pass and #macro/#define call
# The longest value (characters of a string or bytes, items of a list, map or tuple) a method
# call, an interpolated string ("$a$b"), a #set or a printed list may make: as the output, since
# a value any longer cannot be written out whole anyway. vtl_java.MAX_PRINTED and
# vtl_math.MAX_TEXT are the same bound.
MAX_VALUE = MAX_OUTPUT
# What one render's method calls and interpolated strings may return in total, in units: a
# character 1, a list's or map's item ITEM_UNITS (its pointer's bytes; the objects it holds are
# already counted where they were made). Six full-size strings, so a template can still work on
# a 10 MiB body several times over; many medium copies held at once stop here.
MAX_ALLOCATED = 64 * 1024 * 1024
ITEM_UNITS = 8


class RenderError(Exception):
    """The template could not be rendered for this request."""


class _Bounded(io.StringIO):
    """Output that refuses to grow past ``MAX_OUTPUT`` characters while it is written."""

    def __init__(self, limit: int, what: str = "template output") -> None:
        super().__init__()
        self._left = limit
        self._what = what
        self.stop = False  # airspeed's #stop sets this

    def write(self, s: str) -> int:
        if self.stop:
            return 0
        self._left -= len(s)
        if self._left < 0:
            raise RenderError(f"{self._what} too large")
        return super().write(s)


class _Budget:
    """What one render may still spend. The rendering runs on the event loop, so its work is
    every client's wait: per-loop caps multiplied (three nested loops of 1,000 were 10^9
    passes), and a ``#macro`` that calls another twice, thirty deep, is 2^30 calls with no
    loop and no output at all. So the passes are counted over the whole render (AWS's quota is
    per template), and a deadline is checked wherever work multiplies (each pass, each macro or
    ``#define`` call); between two checks a render does at most one pass of the template text.
    One operation can still build a huge value between two checks (``$s.center(1000000000)``),
    so the budget also holds what the render's values may still take (``allocated``, spent by
    ``_calls`` and interpolated strings)."""

    __slots__ = ("allocated", "deadline", "passes", "shared")

    def __init__(self, seconds: float) -> None:
        self.passes = MAX_ITERATIONS
        self.deadline = time.monotonic() + seconds
        self.allocated = MAX_ALLOCATED  # units still allowed (``charge``)
        # Whether the template changed a list or map in place: only then can a JSON document
        # ($input.path's) hold one value many times over, and need the bounded dump (``_dumps``).
        self.shared = False

    def spend(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderError("template render took too long")

    def charge(self, units: int) -> None:
        self.allocated -= units
        if self.allocated < 0:
            raise RenderError(f"template values past {MAX_ALLOCATED} units in one render")


# The budget of the render under way: compiled trees are shared by every request of a plan, so
# it cannot live on them. A ContextVar, not a global, in case renders ever leave the loop's thread.
_BUDGET: ContextVar[_Budget] = ContextVar("vtl_budget")


class _CountedBody:
    """Stands in for a ``#foreach`` body: each pass spends one of the render's
    ``MAX_ITERATIONS`` (``_Budget``), and the one past them fails the render."""

    def __init__(self, block: Any) -> None:
        self._block = block

    def evaluate(self, stream: Any, namespace: Any, loader: Any) -> None:
        budget = _BUDGET.get()
        budget.passes -= 1
        if budget.passes < 0:
            raise RenderError(f"#foreach past {MAX_ITERATIONS} iterations in one render")
        budget.spend()
        self._block.evaluate(stream, namespace, loader)


def _budgeted(execute: Any) -> Any:
    """A ``#macro``'s or ``#define``'s ``execute_function`` that checks the render's deadline
    first: calls multiply work as loops do, without passing through any ``#foreach``."""

    def execute_function(stream: Any, namespace: Any, arguments: Any, loader: Any) -> None:
        _BUDGET.get().spend()
        execute(stream, namespace, arguments, loader)

    return execute_function


def _calls(name: str) -> vtl_sandbox.Call:
    """How a template calls a method named ``name`` (``vtl_sandbox``'s ``calls``), within the
    render's size bounds, chosen once per call site so the common call pays only for measuring
    its result.

    A method whose result size follows from its arguments (``_GROWTH``: padding, ``replace``,
    ``join``, ``addAll``...) is refused before it runs when that size is past ``MAX_VALUE``:
    ``$s.center(1000000000)`` never allocates its gigabyte. After any call, what it returned and
    what it grew in place (``$l.addAll($l)`` answers true and doubles ``$l``) are measured
    against ``MAX_VALUE`` and spent from the render's ``MAX_ALLOCATED``, so neither one huge
    value nor many medium ones held at once get far."""
    estimate = _GROWTH.get(name)
    mutates = name in _MUTATORS

    def call(receiver: Any, method: Any, arguments: list[Any]) -> Any:
        if estimate is not None:
            size = estimate(receiver, arguments)
            if size > MAX_VALUE:
                raise RenderError(f"{name}() would make a value of {size} (past {MAX_VALUE})")
        kind = receiver.__class__
        if mutates and (kind is list or kind is dict):
            before = len(receiver)
            result = method(*arguments)
            budget = _BUDGET.get()
            budget.shared = True
            grown = len(receiver) - before
            if len(receiver) > MAX_VALUE:
                raise RenderError(f"{name}() made a value of {len(receiver)} items (past {MAX_VALUE})")
            if grown > 0:
                budget.charge(grown * ITEM_UNITS)
        else:
            result = method(*arguments)
        kind = result.__class__  # inline, not helpers: this runs for every call a template makes
        if kind is str or kind is bytes:
            size = len(result)
            units = size
        elif kind is list or kind is dict or kind is tuple:
            size = len(result)
            units = size * ITEM_UNITS
        else:
            return result
        if size > MAX_VALUE:
            raise RenderError(f"{name}() made a value of {size} (past {MAX_VALUE})")
        budget = _BUDGET.get()
        budget.allocated -= units
        if budget.allocated < 0:
            budget.charge(0)  # raises
        return result

    return call


# The methods that make a list or map hold more (Python's and vtl_java's): after one, a JSON
# document may hold a value many times over (``_Budget.shared``).
_MUTATORS = frozenset({"append", "extend", "insert", "add", "addAll", "put", "putAll", "update", "setdefault"})


def _width(value: Any, arguments: list[Any]) -> int:
    """``center``/``ljust``/``rjust``/``zfill``: the width asked, when it is the text's."""
    if isinstance(value, str | bytes) and arguments and isinstance(arguments[0], int):
        return max(len(value), arguments[0])
    return 0


def _expandtabs(value: Any, arguments: list[Any]) -> int:
    size = arguments[0] if arguments else 8
    if not isinstance(value, str | bytes) or not isinstance(size, int):
        return 0
    widest = len(value) * max(size, 1)
    if widest <= MAX_VALUE:  # the common case answers without scanning the text
        return widest
    tabs = value.count("\t") if isinstance(value, str) else value.count(b"\t")
    return len(value) + tabs * max(size - 1, 0)


def _replace(value: Any, arguments: list[Any]) -> int:
    """``replace(old, new[, count])``: the text's length plus the growth of each match."""
    if len(arguments) < 2 or not isinstance(value, str | bytes):
        return 0
    old, new = arguments[0], arguments[1]
    if type(old) is not type(value) or type(new) is not type(value):
        return 0
    growth = len(new) - len(old)
    if growth <= 0:
        return len(value)
    most = len(value) + 1  # an empty ``old`` matches between every two characters
    if len(arguments) > 2 and isinstance(arguments[2], int) and arguments[2] >= 0:
        most = min(most, arguments[2])
    if len(value) + most * growth <= MAX_VALUE:
        return len(value) + most * growth
    text: Any = value  # str or bytes, with an ``old`` of the same type
    found: int = text.count(old)
    return len(value) + min(most, found) * growth


def _replace_all(value: Any, arguments: list[Any]) -> int:
    """vtl_java's ``replaceAll(regex, replacement)``: each match becomes the replacement, whose
    group references (each needs a backslash) are each at most the match. When the quick bound
    is past the limit, ``re.subn`` with an empty replacement counts the matches and their
    length in C, building nothing longer than the text itself."""
    if len(arguments) < 2 or not isinstance(value, str):
        return 0
    pattern, replacement = vtl_java.java_str(arguments[0]), vtl_java.java_str(arguments[1])
    references = replacement.count("\\")
    quick = len(value) * (1 + references) + (len(value) + 1) * len(replacement)
    if quick <= MAX_VALUE:
        return quick
    rest, matches = re.subn(pattern, "", value)
    return len(rest) + matches * len(replacement) + references * (len(value) - len(rest))


def _join(value: Any, arguments: list[Any]) -> int:
    if not arguments or not isinstance(value, str | bytes):
        return 0
    items = arguments[0]
    if not hasattr(items, "__len__"):
        return 0
    separators = len(value) * max(len(items) - 1, 0)
    if separators > MAX_VALUE:
        return separators
    try:
        return separators + sum(map(len, items))
    except TypeError:  # not all text: join itself refuses
        return 0


def _translate(value: Any, arguments: list[Any]) -> int:
    """``str.translate(table)``: each character replaced by at most the longest text of the table."""
    if not arguments or not isinstance(value, str) or not isinstance(arguments[0], dict):
        return 0
    table = arguments[0]
    longer = [(key, text) for key, text in table.items() if isinstance(text, str) and len(text) > 1]
    if not longer:
        return len(value)
    quick = len(value) * max(len(text) for _, text in longer)
    if quick <= MAX_VALUE or len(longer) > 64:  # many long entries: the bound, not one scan each
        return quick
    size = len(value)
    for key, text in longer:
        found = chr(key) if isinstance(key, int) and 0 <= key <= 0x10FFFF else key
        if isinstance(found, str):
            size += value.count(found) * (len(text) - 1)
    return size


def _added(value: Any, arguments: list[Any]) -> int:
    """``extend``/``addAll``/``update``/``putAll``: the items there will be (at most)."""
    if isinstance(value, list | dict) and arguments and hasattr(arguments[0], "__len__"):
        return len(value) + len(arguments[0])
    return 0


def _fromkeys(value: Any, arguments: list[Any]) -> int:
    if isinstance(value, dict) and arguments and hasattr(arguments[0], "__len__"):
        return len(arguments[0])
    return 0


def _to_bytes(value: Any, arguments: list[Any]) -> int:
    """``int.to_bytes(length, ...)``: ``length`` bytes."""
    if isinstance(value, int) and arguments and isinstance(arguments[0], int):
        return arguments[0]
    return 0


# Method name -> the size (characters or items) of what it would make, from its receiver and
# arguments, computed before it runs (``_calls``); 0 when the call is not that method.
_GROWTH: dict[str, Any] = {
    "center": _width,
    "ljust": _width,
    "rjust": _width,
    "zfill": _width,
    "expandtabs": _expandtabs,
    "replace": _replace,
    "replaceAll": _replace_all,
    "join": _join,
    "translate": _translate,
    "extend": _added,
    "addAll": _added,
    "update": _added,
    "putAll": _added,
    "fromkeys": _fromkeys,
    "to_bytes": _to_bytes,
}


def _value_stream() -> _Bounded:
    """Where an interpolated string or a ``$macro()`` used as a value is written: bounded as
    the output is, so ``"$s$s"`` cannot build a value past ``MAX_VALUE`` first."""
    return _Bounded(MAX_VALUE, "template value")


def _interpolated(element: Any) -> Any:
    """An interpolated string's ``calculate`` that writes into a ``_value_stream`` and spends
    the string from the render's ``MAX_ALLOCATED``."""
    block = element.block

    def calculate(namespace: Any, loader: Any) -> str:
        out = _value_stream()
        block.evaluate(out, namespace, loader)
        text = out.getvalue()
        _BUDGET.get().charge(len(text))
        return text

    return calculate


def _checked_set(element: Any) -> Any:
    """A ``#set``'s ``evaluate_raw`` that refuses a value past ``MAX_VALUE`` and notes a set into
    a map (``#set($doc.a = $l)``) as a change in place (``_Budget.shared``)."""
    value = element.value
    terms = element.terms
    evaluate = element.evaluate_raw

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        if len(terms) > 1:
            _BUDGET.get().shared = True
        evaluate(stream, namespace, loader)

    def calculate(namespace: Any, loader: Any) -> Any:
        found = value.calculate(namespace, loader)
        kind = found.__class__
        if (kind is str or kind is list or kind is dict or kind is bytes or kind is tuple) and len(found) > MAX_VALUE:
            raise RenderError(f"#set of a value of {len(found)} (past {MAX_VALUE})")
        return found

    element.value = _Calculated(calculate)
    return evaluate_raw


class _Calculated:
    """An expression whose ``calculate`` is the function given."""

    def __init__(self, calculate: Any) -> None:
        self.calculate = calculate


class _Iterated:
    """Stands in for a ``#foreach``'s list expression: what Velocity 1.7 iterates of a value.
    A map gives its values (airspeed: its keys); a string, number or boolean is not iterable,
    so the loop runs no pass (airspeed: a string's characters, a number failed the render)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def calculate(self, namespace: Any, loader: Any) -> Any:
        found = self._value.calculate(namespace, loader)
        if isinstance(found, dict):
            return list(found.values())
        if isinstance(found, str | int | float):  # bool is an int
            return None
        return found


def _breakable(evaluate: Any) -> Any:
    """A ``#foreach``'s ``evaluate_raw`` that ends the loop where a ``#break`` in it ran."""

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        try:
            evaluate(stream, namespace, loader)
        except airspeed.TemplateExecutionError as exc:
            if not templates.broke(exc):
                raise

    return evaluate_raw


def compile(text: str) -> airspeed.Template:
    """Parse once (per plan); the compiler has already refused templates that do not parse.

    The parsed tree is then prepared in one walk: references print the Java way
    (``vtl_java``), operators are Velocity's (``vtl_math``), name lookups go through the
    sandbox (``vtl_sandbox``), every ``#foreach`` body is wrapped to spend the render's budget
    (``_Budget``: airspeed has no bound) and its list iterated as Velocity does (``_Iterated``),
    and every ``#macro``/``#define`` call checks the budget's deadline; the wrappers come last,
    as they hide their bodies from any later walk."""
    template = airspeed.Template(text)
    template.ensure_compiled()
    tree = list(templates.elements(template.root_element))
    vtl_java.render_like_java(tree)
    vtl_math.prepare(tree)
    vtl_sandbox.sandbox(tree, calls=_calls, stream=_value_stream)
    for element in tree:
        if isinstance(element, airspeed.InterpolatedStringLiteral):
            element.calculate = _interpolated(element)
        elif isinstance(element, airspeed.SetDirective):
            element.evaluate_raw = _checked_set(element)
        elif isinstance(element, airspeed.ForeachDirective):
            element.block = _CountedBody(element.block)
            element.value = _Iterated(element.value)
            element.evaluate_raw = _breakable(element.evaluate_raw)
        elif isinstance(element, airspeed._FunctionDefinition):  # #macro, #define
            element.execute_function = _budgeted(element.execute_function)
    return template


# Looked up, not imported by name: some jsonpath-ng releases ship type hints that do not
# re-export ``parse``, and mypy --strict would refuse the attribute there.
_PARSE: Any = getattr(jsonpath_ng, "parse")  # noqa: B009


@functools.lru_cache(maxsize=256)
def _jsonpath(path: str) -> Any:
    try:
        return _PARSE(path)
    except (jsonpath_ng.exceptions.JsonPathParserError, jsonpath_ng.exceptions.JsonPathLexerError, Exception) as exc:
        raise RenderError(f"bad JSONPath {path!r}") from exc


def select(document: Any, path: str) -> Any:
    """The value at ``path``, shaped by the path as Jayway JsonPath (AWS's) shapes it: an
    indefinite path (``[*]``, ``..``, a slice, a union) gives a list of its matches, ``[]``
    when none; a definite one its one match, None when none. (The shape used to follow
    whether the text held a ``*``: ``['a*b']`` gave a list, ``[*]`` over ``[]`` None.)"""
    expression = _jsonpath(path)
    found = [match.value for match in expression.find(document)]
    if _indefinite(path):
        return found
    if not found:
        return None
    return found[0] if len(found) == 1 else found


@functools.lru_cache(maxsize=256)
def _indefinite(path: str) -> bool:
    return _has_many(_jsonpath(path))


def _has_many(node: Any) -> bool:
    """Whether a parsed JSONPath can match more than one value (Jayway's "indefinite")."""
    if isinstance(node, jsonpath_ng.Child):
        return _has_many(node.left) or _has_many(node.right)
    if isinstance(node, jsonpath_ng.Fields):
        return len(node.fields) != 1 or node.fields[0] == "*"
    if isinstance(node, jsonpath_ng.Index):
        return len(getattr(node, "indices", (0,))) != 1
    return not isinstance(node, jsonpath_ng.Root | jsonpath_ng.This)


class Input:
    """``$input`` for a request template: the body as text, as JSON and the request parameters."""

    def __init__(self, body: bytes, params: Mapping[str, Mapping[str, str]]) -> None:
        self._raw = body
        self._params = params
        self._document: Any = None
        self._parsed = False

    @property
    def body(self) -> str:
        return self._raw.decode("utf-8", "replace")

    def _json(self) -> Any:
        if not self._parsed:
            # AWS treats an empty body as an empty object, so templates can read optional fields.
            try:
                self._document = json.loads(self._raw) if self._raw.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise RenderError("body is not JSON") from exc
            self._parsed = True
        return self._document

    def json(self, path: str) -> str:
        """The JSON text of the value at ``path`` (``null`` when nothing matches)."""
        return _dumps(select(self._json(), path))

    def path(self, path: str) -> Any:
        """The value at ``path`` as an object templates can walk (``.size()``, ``#foreach``);
        empty text when nothing matches (as AWS renders it, never the reference itself)."""
        found = select(self._json(), path)
        return "" if found is None else found

    def params(self, name: str | None = None) -> Any:
        """All parameters (``path``, ``querystring``, ``header`` maps), or the value of ``name``
        looked up in that order (AWS's), empty when absent."""
        if name is None:
            return self._params
        for where in ("path", "querystring", "header"):
            values = self._params.get(where, {})
            if name in values:
                return values[name]
        return ""


def _dumps(value: Any, *, shared: bool | None = None) -> str:
    """Compact JSON text of ``value``. A list or map that may hold one value many times over
    (``shared``; by default whenever the render changed one in place, ``_Budget.shared``) is
    encoded piece by piece and refused past ``MAX_VALUE``: ``$l.addAll($l)`` twenty times over
    a 10 MiB string is 10^13 characters of JSON. A parsed body is a tree, its text about the
    body's size, and takes the C encoder."""
    if shared is None:
        budget = _BUDGET.get(None)
        shared = budget is not None and budget.shared
    if not shared or not isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    parts: list[str] = []
    left = MAX_VALUE
    for chunk in _ENCODER.iterencode(value):  # not one-shot: Python's encoder, in pieces
        left -= len(chunk)
        if left < 0:
            raise RenderError(f"a value whose JSON is past {MAX_VALUE} characters")
        parts.append(chunk)
    return "".join(parts)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class Util:
    """``$util``: AWS's helper functions."""

    # AWS's names are camelCase (templates call them so).

    def escapeJavaScript(self, text: Any) -> str:
        """Commons Lang's ``StringEscapeUtils.escapeJavaScript`` (what AWS documents): quotes,
        backslash and ``/`` escaped, every control character too (``\\b \\t \\n \\f \\r`` or
        ``\\u00XX``: a raw one made the AWS idiom ``"$util.escapeJavaScript(...)"`` invalid JSON),
        and everything past ASCII as ``\\uXXXX`` per UTF-16 unit."""
        escaped = _text(text).translate(_JS)
        return escaped if escaped.isascii() else _NON_ASCII.sub(_utf16_escapes, escaped)

    def parseJson(self, text: Any) -> Any:
        try:
            return json.loads(_text(text))
        except (ValueError, RecursionError) as exc:
            raise RenderError("parseJson: not JSON") from exc

    def urlEncode(self, text: Any) -> str:
        """Java's ``URLEncoder.encode(text, "UTF-8")``: a space is "+", and only A-Z a-z 0-9
        . - * _ stay as they are (Python's quoting always keeps "~", Java's does not); a lone
        surrogate is "?", as Java's encoder writes it."""
        return urllib.parse.quote_plus(_text(text), safe="*", errors="replace").replace("~", "%7E")

    def urlDecode(self, text: Any) -> str:
        """Java's ``URLDecoder.decode(text, "UTF-8")``, which refuses a "%" not followed by two
        hex digits (so AWS fails the template) where Python's would keep it as text."""
        value = _text(text)
        if "%" in value and _BAD_PERCENT.search(value):
            raise RenderError("urlDecode: an incomplete or non-hex % escape")
        return urllib.parse.unquote_plus(value)

    def base64Encode(self, text: Any) -> str:
        return base64.b64encode(_text(text).encode()).decode("ascii")

    def base64Decode(self, text: Any) -> str:
        try:
            return base64.b64decode(_text(text), validate=True).decode("utf-8", "replace")
        except ValueError as exc:
            raise RenderError("base64Decode: not base64") from exc


_JS = str.maketrans(
    {
        **{chr(c): f"\\u{c:04X}" for c in range(0x20)},
        **{"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"},
        **{"\\": "\\\\", '"': '\\"', "'": "\\'", "/": "\\/"},
    }
)
_NON_ASCII = re.compile("[^\x00-\x7f]")
_BAD_PERCENT = re.compile("%(?![0-9a-fA-F]{2})")


def _utf16_escapes(match: re.Match[str]) -> str:
    """``\\uXXXX`` for each UTF-16 code unit of one character, as Java iterates a string."""
    units = match.group().encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(units[i : i + 2], 'big'):04X}" for i in range(0, len(units), 2))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # A list or map passed to $util may be the template's own, built of literals ([$l, $l]).
    return "" if value is None else _dumps(value, shared=True)


UTIL = Util()
# What templates may read on these two (vtl_sandbox): AWS's names, nothing of Python's.
vtl_sandbox.publish(Input, ("body", "json", "path", "params"))
vtl_sandbox.publish(Util, ("escapeJavaScript", "parseJson", "urlEncode", "urlDecode", "base64Encode", "base64Decode"))


def params_of(
    path: Mapping[str, str], query: Sequence[tuple[str, str]], headers: Sequence[tuple[str, str]]
) -> dict[str, dict[str, str]]:
    """``$input.params()``: the first value of each query parameter and header (as AWS gives)."""
    querystring: dict[str, str] = {}
    for key, value in query:
        querystring.setdefault(key, value)
    header: dict[str, str] = {}
    for key, value in headers:
        header.setdefault(key, value)
    return {"path": dict(path), "querystring": querystring, "header": header}


def render(
    template: airspeed.Template, namespace: Mapping[str, Any], *, limit: int = MAX_OUTPUT, seconds: float = MAX_SECONDS
) -> str:
    """The output of ``template`` within its limits: ``limit`` characters, and ``MAX_ITERATIONS``
    ``#foreach`` passes and ``seconds`` for the whole render (``_Budget``)."""
    out = _Bounded(limit)
    token = _BUDGET.set(_Budget(seconds))
    try:
        template.merge_to(dict(namespace), out)
    except RenderError:
        raise
    except Exception as exc:  # airspeed and the helpers above raise many kinds; all mean "cannot render"
        if not templates.broke(exc):  # a #break outside any #foreach ends the template
            raise RenderError(str(exc) or type(exc).__name__) from exc
    finally:
        _BUDGET.reset(token)
    return out.getvalue()
