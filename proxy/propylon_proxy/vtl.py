"""Rendering mapping templates (VTL) the way Amazon API Gateway does (DESIGN.md §2.5).

The engine is airspeed (the same one ``propylon_config.templates`` checks with); this module
only supplies AWS's variables: ``$input`` (``body``, ``json(path)``, ``path(path)``,
``params()``, ``params(name)``), ``$util`` (escapeJavaScript, parseJson, urlEncode, urlDecode,
base64Encode, base64Decode), ``$context`` and ``$stageVariables``. JSONPath is jsonpath-ng
(a maintained library), so ``$``, ``$.a.b``, ``$.a[0]``, ``$['a']`` and ``[*]`` mean what
they mean there. A template is compiled once per plan (``compile``); anything that goes wrong
while rendering, including output past ``MAX_OUTPUT`` (10 MiB), is one ``RenderError`` that
the integration turns into 500 API_CONFIGURATION_ERROR before anything is sent upstream.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import airspeed
import jsonpath_ng
import jsonpath_ng.exceptions

from propylon_config import templates
from propylon_proxy import vtl_java, vtl_sandbox

MAX_OUTPUT = 10 * 1024 * 1024
MAX_ITERATIONS = 1000  # per #foreach loop, as AWS limits it


class RenderError(Exception):
    """The template could not be rendered for this request."""


class _Bounded(io.StringIO):
    """Output that refuses to grow past ``MAX_OUTPUT`` characters while it is written."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._left = limit
        self.stop = False  # airspeed's #stop sets this

    def write(self, s: str) -> int:
        if self.stop:
            return 0
        self._left -= len(s)
        if self._left < 0:
            raise RenderError("template output too large")
        return super().write(s)


class _CountedBody:
    """Stands in for a ``#foreach`` body: airspeed sets ``$foreach.count`` before each pass, so
    the body can refuse the pass past ``MAX_ITERATIONS`` without state of its own."""

    def __init__(self, block: Any) -> None:
        self._block = block

    def evaluate(self, stream: Any, namespace: Any, loader: Any) -> None:
        if namespace["foreach"]["count"] > MAX_ITERATIONS:
            raise RenderError(f"#foreach past {MAX_ITERATIONS} iterations")
        self._block.evaluate(stream, namespace, loader)


def compile(text: str) -> airspeed.Template:
    """Parse once (per plan); the compiler has already refused templates that do not parse.

    The parsed tree is then prepared in one walk: references print the Java way
    (``vtl_java``), name lookups go through the sandbox (``vtl_sandbox``), and every
    ``#foreach`` body is wrapped to stop past ``MAX_ITERATIONS`` (airspeed has no bound); the
    wrappers come last, as they hide their bodies from any later walk."""
    template = airspeed.Template(text)
    template.ensure_compiled()
    tree = list(templates.elements(template.root_element))
    vtl_java.render_like_java(tree)
    vtl_sandbox.sandbox(tree)
    for element in tree:
        if isinstance(element, airspeed.ForeachDirective):
            element.block = _CountedBody(element.block)
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
    """The value at ``path``: one match is the value itself, several (``[*]``) a list, none None."""
    expression = _jsonpath(path)
    found = [match.value for match in expression.find(document)]
    if not found:
        return None
    if len(found) == 1 and "*" not in path:
        return found[0]
    return found


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


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Util:
    """``$util``: AWS's helper functions."""

    # AWS's names are camelCase (templates call them so).
    _JS = str.maketrans(
        {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
    )

    def escapeJavaScript(self, text: Any) -> str:
        return _text(text).translate(self._JS)

    def parseJson(self, text: Any) -> Any:
        try:
            return json.loads(_text(text))
        except (ValueError, RecursionError) as exc:
            raise RenderError("parseJson: not JSON") from exc

    def urlEncode(self, text: Any) -> str:
        # Java's URLEncoder: a space is "+", and only A-Z a-z 0-9 . - * _ stay as they are.
        return urllib.parse.quote_plus(_text(text), safe="*")

    def urlDecode(self, text: Any) -> str:
        return urllib.parse.unquote_plus(_text(text))

    def base64Encode(self, text: Any) -> str:
        return base64.b64encode(_text(text).encode()).decode("ascii")

    def base64Decode(self, text: Any) -> str:
        try:
            return base64.b64decode(_text(text), validate=True).decode("utf-8", "replace")
        except ValueError as exc:
            raise RenderError("base64Decode: not base64") from exc


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else _dumps(value)


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


def render(template: airspeed.Template, namespace: Mapping[str, Any], *, limit: int = MAX_OUTPUT) -> str:
    out = _Bounded(limit)
    try:
        template.merge_to(dict(namespace), out)
    except RenderError:
        raise
    except Exception as exc:  # airspeed and the helpers above raise many kinds; all mean "cannot render"
        raise RenderError(str(exc) or type(exc).__name__) from exc
    return out.getvalue()
