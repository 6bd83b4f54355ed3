"""The expressions a ``requestParameters`` / ``responseParameters`` value may use (DESIGN.md §1).

The proxy (``propylon_proxy.mappings``) substitutes the expressions it knows and sends any other
text as it is, so a typo such as ``$request.headers.X`` or ``$context.identity.userAgent`` would
reach the backend as those very characters on every request. Amazon API Gateway refuses such a
mapping ("Invalid mapping expression"); here it is a diagnostic on the value, found before
deploying. Only text that starts like an expression (``$request.``, ``$response.``,
``$context.``, ``$stageVariables.``, ``${``) is judged: any other ``$`` is literal text.

The grammar is the proxy's, kept in step with it by tests that send what these accept.
"""

from __future__ import annotations

import re

# What the proxy substitutes; a name is followed by a character no name has.
_KNOWN = re.compile(
    r"\$\{stageVariables\.[A-Za-z0-9_]+\}"
    r"|\$(?:request\.(?:header|querystring|path)|response\.header)\.[A-Za-z0-9_-]+"
    r"|\$stageVariables\.[A-Za-z0-9_]+"
    r"|\$context\.(?:identity\.sourceIp|requestId|stage|authorizer(?:\.[A-Za-z0-9_:]+)+)(?![A-Za-z0-9_])"
)
# Where an expression starts, and the text a diagnostic quotes as the one written.
_START = re.compile(r"\$(?:\{|(?:request|response|context|stageVariables)\b)")
_WRITTEN = re.compile(r"\$\{[^}]*\}?|\$[A-Za-z][A-Za-z0-9_.:-]*")

_REQUEST_FORMS = (
    "$request.header|querystring|path.NAME, $context.requestId|stage|identity.sourceIp|authorizer.NAME, "
    "$stageVariables.NAME or ${stageVariables.NAME}"
)


def problem(value: str, *, response: bool) -> str | None:
    """What is wrong with the expressions in a mapping ``value``, or None when nothing is.

    A value that is one quoted literal (``'text'``) holds no expressions."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return None
    for start in _START.finditer(value):
        at = start.start()
        known = _KNOWN.match(value, at)
        written = (_WRITTEN.match(value, at) or start).group()
        if known is None:
            forms = f"$response.header.NAME, {_REQUEST_FORMS}" if response else _REQUEST_FORMS
            return (
                f"{written!r} is not an expression a mapping knows (it would be sent as that text): "
                f"use {forms}, or a quoted literal 'text'"
            )
        if not response and known.group().startswith("$response."):
            return f"{known.group()!r} has a value only in responseParameters: a request has no response yet"
    return None
