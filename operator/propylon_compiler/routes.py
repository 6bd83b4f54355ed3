"""Route keys and path templates: parsing them, and ordering routes by precedence.

A route key is ``"METHOD /path"``, ``"ANY /path"`` or ``"$default"`` (WebSocket Apis use
``$connect``, ``$disconnect``, ``$default`` or an action name). Paths are made of literal
segments, ``{name}`` for one segment and ``{name+}`` for the rest of the path (last only).

Precedence (DESIGN.md section 8) is decided here, once, so the proxy can take the first
match: paths compare segment by segment from the left, a literal beats ``{name}`` which beats
``{name+}``; for the same path a method beats ``ANY``; ``$default`` comes last. Ties that the
rule leaves open are broken by the text of the key, so the order never depends on input order.
"""

from __future__ import annotations

import dataclasses
import re

from propylon_config import model

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT = "$default"
WEBSOCKET_SPECIAL = ("$connect", "$disconnect", DEFAULT)

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
# RFC 3986 pchar without percent-escapes: unreserved, sub-delims, ":" and "@", plus any printable
# non-ASCII character (a route path is written decoded: "/café" is reached by "/caf%C3%A9"; not
# a control, a space or a separator such as U+00A0, U+2028, which no one can tell from its
# neighbours). The router compares *decoded* request segments, so a literal written "%2D" could
# never be reached by its natural spelling while a greedy route served it: a "%" is refused
# instead (issue 8, item 2).
_LITERAL = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|[^\x00-\x7f])+$")


def is_literal(segment: str) -> bool:
    """Whether ``segment`` can be a literal segment of a route path or basePath."""
    if _LITERAL.match(segment) is None:
        return False
    return segment.isascii() or all(c.isascii() or c.isprintable() for c in segment)


_ACTION = re.compile(r"^[A-Za-z0-9_.:\-]+$")


PERCENT_PROBLEM = "percent-escapes are not allowed: write the character itself (requests are matched after decoding)"


class RouteKeyError(ValueError):
    """A route key or path template that cannot be served; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedKey:
    method: str  # "GET", ..., "ANY", "$default", or a WebSocket key
    path: str  # "" for keys without a path
    segments: tuple[model.Segment, ...]


def parse_key(route_key: str, protocol: model.Protocol) -> ParsedKey:
    """Parse one route key; raises RouteKeyError with a message fit for a diagnostic."""
    if protocol is model.Protocol.WEBSOCKET:
        if route_key in WEBSOCKET_SPECIAL or (not route_key.startswith("$") and _ACTION.match(route_key)):
            return ParsedKey(route_key, "", ())
        raise RouteKeyError(
            f"invalid WebSocket route key {route_key!r}: use $connect, $disconnect, $default or an action name"
        )
    if route_key == DEFAULT:
        return ParsedKey(DEFAULT, "", ())
    method, sep, path = route_key.partition(" ")
    if not sep or not path or " " in path:
        raise RouteKeyError(f'invalid route key {route_key!r}: expected "METHOD /path", "ANY /path" or "$default"')
    if method != "ANY" and method not in HTTP_METHODS:
        allowed = ", ".join((*HTTP_METHODS, "ANY"))
        raise RouteKeyError(f"invalid method {method!r} in route key {route_key!r} (expected one of: {allowed})")
    return ParsedKey(method, path, parse_path(path))


def parse_path(path: str) -> tuple[model.Segment, ...]:
    """Parse a path template into segments; ``/`` is the empty tuple."""
    if not path.startswith("/"):
        raise RouteKeyError(f"path {path!r} must start with '/'")
    if path == "/":
        return ()
    segments: list[model.Segment] = []
    names: set[str] = set()
    raw_segments = path[1:].split("/")
    for position, raw in enumerate(raw_segments, start=1):
        if raw == "":
            raise RouteKeyError(f"path {path!r} has an empty segment (a '//' or a trailing '/')")
        if "{" in raw or "}" in raw:
            segment = _parse_param(raw, path)
            if segment.value in names:
                raise RouteKeyError(f"path {path!r} uses the parameter name {segment.value!r} twice")
            if segment.kind is model.SegmentKind.GREEDY and position != len(raw_segments):
                raise RouteKeyError(f"greedy parameter {{{segment.value}+}} must be the last segment of {path!r}")
            names.add(segment.value)
            segments.append(segment)
        elif "%" in raw:
            raise RouteKeyError(f"path segment {raw!r} of {path!r}: {PERCENT_PROBLEM}")
        elif raw in (".", ".."):
            raise RouteKeyError(f"path segment {raw!r} of {path!r}: '.' and '..' segments can never be requested")
        elif is_literal(raw):
            segments.append(model.Segment(kind=model.SegmentKind.LITERAL, value=raw))
        else:
            raise RouteKeyError(f"path segment {raw!r} of {path!r} contains characters not allowed in a URL path")
    return tuple(segments)


def _parse_param(raw: str, path: str) -> model.Segment:
    if raw.count("{") != 1 or raw.count("}") != 1 or not (raw.startswith("{") and raw.endswith("}")):
        raise RouteKeyError(
            f"path segment {raw!r} of {path!r}: a parameter must be a whole segment, {{name}} or {{name+}}, "
            "with balanced braces"
        )
    if raw in ("{}", "{+}"):
        raise RouteKeyError(f"path segment {raw!r} of {path!r}: the parameter name is empty")
    match = _PARAM.match(raw)
    if match is None:
        raise RouteKeyError(
            f"path segment {raw!r} of {path!r}: a parameter name is letters, digits and '_', not starting with a digit"
        )
    kind = model.SegmentKind.GREEDY if match.group(2) else model.SegmentKind.PARAM
    return model.Segment(kind=kind, value=match.group(1))


def shape(parsed: ParsedKey) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a route matches, ignoring parameter names: two routes with one shape are ambiguous."""
    return parsed.method, tuple(
        (s.kind.value, s.value if s.kind is model.SegmentKind.LITERAL else "") for s in parsed.segments
    )


_RANK = {model.SegmentKind.LITERAL: 0, model.SegmentKind.PARAM: 1, model.SegmentKind.GREEDY: 2}


def precedence(route: model.Route) -> tuple[object, ...]:
    """Sort key: most specific first, ``$default`` last, ties broken by the key's text."""
    if route.method == DEFAULT:
        return (2, (), 0, route.route_key)
    if route.method.startswith("$") or not route.path:
        # WebSocket keys: $connect, $disconnect, then actions by name; no paths to compare.
        special = route.method in WEBSOCKET_SPECIAL
        return (0 if special else 1, (), 0, route.route_key)
    segments = tuple((_RANK[s.kind], s.value if s.kind is model.SegmentKind.LITERAL else "") for s in route.segments)
    return (0, segments, 1 if route.method == "ANY" else 0, route.route_key)


def sort(routes: list[model.Route]) -> tuple[model.Route, ...]:
    return tuple(sorted(routes, key=precedence))
