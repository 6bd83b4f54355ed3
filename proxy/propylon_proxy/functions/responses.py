"""A handler's return value mapped back onto an HTTP response, with the AWS proxy rules.

Payload 1.0 needs ``statusCode``; ``headers`` and ``multiValueHeaders`` are merged by
case-insensitive name (a name in both keeps the multi-value list, as AWS does; a single-valued
field such as Content-Type is sent once); ``body`` is text, base64-decoded when
``isBase64Encoded``. Payload 2.0 reads the same fields plus ``cookies`` (each its own
``Set-Cookie``), and a return value without ``statusCode`` is a 200 JSON response: a string as
is, anything else JSON-encoded. Anything that does not fit is ``Malformed`` (-> 502).

The gateway frames the response itself, so framing and hop-by-hop headers a handler returns are
dropped, and a header that could not be written safely (CR/LF, a bad name) makes it malformed.
The gateway's own headers (``x-request-id``, ``x-propylon-error-type``, the names HTTP_PROXY
drops from a backend's answer) are dropped too: a function cannot pass its answer off as a
gateway response. The status must be a final one, 200..599: a 1xx is not an answer (written as
one, its body would be read as the next response on the connection). A 1xx, a statusCode of
non-ASCII digits and a body UTF-8 cannot encode (a lone surrogate) are malformed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from propylon_proxy import forwarding, replies

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Never from a handler: the framing, hop-by-hop headers and the gateway's own (forwarding.py
# drops the same ones from an HTTP_PROXY backend's answer).
_NOT_FROM_HANDLER = forwarding.GATEWAY_FRAMED | forwarding._NOT_TO_CLIENT
# Fields a response carries once (RFC 9110's singletons, Content-Disposition, HSTS and CORS's
# single-valued ones): repeated, a client takes either one, or (CORS) refuses the answer.
_SINGLE_VALUED = frozenset(
    {
        "access-control-allow-credentials",
        "access-control-allow-origin",
        "access-control-max-age",
        "age",
        "content-disposition",
        "content-location",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
        "strict-transport-security",
    }
)


class Malformed(ValueError):
    """The return value is not a valid proxy response (-> 502)."""


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value)
        if _BAD_VALUE.search(text):
            raise Malformed("a header value holds a control character")
        return text
    raise Malformed(f"a header value must be a string, not {type(value).__name__}")


def _headers(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """The response headers: ``headers`` and ``multiValueHeaders`` merged by case-insensitive name.

    A header name is sent once however the handler spelled it (a merge of two dicts easily
    leaves ``content-type`` beside ``Content-Type``), under the spelling met first, as AWS keys
    them: in ``headers`` a later spelling replaces the value, in ``multiValueHeaders`` the lists
    are joined, and a name in both keeps the multi-value list. A single-valued field
    (``_SINGLE_VALUED``) left with several values keeps the last: two Content-Types or
    Locations leave a client to guess which one counts.
    """
    single = answer.get("headers") or {}
    multi = answer.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise Malformed("headers and multiValueHeaders must be objects")
    merged: dict[str, tuple[str, list[str]]] = {}  # lower-cased name -> (spelling, values)
    for name, value in single.items():
        text = _header_value(value)
        found = merged.get(str(name).lower())
        if found is None:
            merged[str(name).lower()] = (str(name), [text])
        else:
            found[1][:] = [text]
    listed: dict[str, tuple[str, list[str]]] = {}
    for name, values in multi.items():
        if not isinstance(values, list):
            raise Malformed("multiValueHeaders values must be lists")
        texts = [_header_value(v) for v in values]
        found = listed.get(str(name).lower())
        if found is None:
            listed[str(name).lower()] = (str(name), texts)
        else:
            found[1].extend(texts)
    for lower in listed:
        merged.pop(lower, None)  # a name in both keeps the multi-value list
    merged.update(listed)
    out: list[tuple[str, str]] = []
    for lower, (name, texts) in merged.items():
        if not _HEADER_NAME.match(name):
            raise Malformed(f"{name!r} is not a header name")
        if lower in _NOT_FROM_HANDLER:
            continue
        out.extend((name, text) for text in (texts[-1:] if lower in _SINGLE_VALUED else texts))
    return out


def _status(value: Any) -> int:
    if isinstance(value, bool):
        raise Malformed("statusCode must be a number")
    if isinstance(value, str) and value.isascii() and value.isdigit():  # not "\u00b2", "\u0662"...
        try:
            value = int(value)
        except ValueError as exc:  # past int()'s 4,300 digits
            raise Malformed("statusCode is not an HTTP status") from exc
    if not isinstance(value, int) or not 200 <= value <= 599:
        # 1xx is interim, never the answer to a request.
        raise Malformed(f"statusCode {value!r} is not a final HTTP status")
    return value


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800" in the JSON)
        raise Malformed("body is not valid Unicode text") from exc


def _body(answer: dict[str, Any]) -> bytes:
    body = answer.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise Malformed("body must be a string")
    encoded = answer.get("isBase64Encoded", False)
    if encoded is True or encoded == "true":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Malformed("body is not valid base64") from exc
    return _utf8(body)


def _with_content_type(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return headers


def _structured(answer: dict[str, Any], *, cookies: bool) -> replies.Reply:
    status = _status(answer["statusCode"])
    headers = _headers(answer)
    if cookies:
        jar = answer.get("cookies") or []
        if not isinstance(jar, list) or not all(isinstance(c, str) for c in jar):
            raise Malformed("cookies must be a list of strings")
        for cookie in jar:
            headers.append(("Set-Cookie", _header_value(cookie)))
    return replies.Reply(status=status, headers=_with_content_type(headers), body=_body(answer))


def reply(answer: Any, version: str) -> replies.Reply:
    """The client's response for a handler's return value; raises ``Malformed``."""
    if version == "1.0":
        if not isinstance(answer, dict) or "statusCode" not in answer:
            raise Malformed("a payload 1.0 response needs statusCode")
        return _structured(answer, cookies=False)
    if isinstance(answer, dict) and "statusCode" in answer:
        return _structured(answer, cookies=True)
    if isinstance(answer, str):
        body = answer
    else:
        try:
            body = json.dumps(answer, separators=(",", ":"))
        except (ValueError, RecursionError) as exc:
            raise Malformed("the return value cannot be encoded as JSON") from exc
    return replies.Reply(status=200, headers=[("Content-Type", "application/json")], body=_utf8(body))
