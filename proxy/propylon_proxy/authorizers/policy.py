"""Reading an authorizer function's answer: an IAM policy, or a 2.0 simple response.

The answer is parsed once (and cached as parsed); whether it lets a request through is decided
per request against that request's ARN, so a cached TOKEN policy is judged for every route it
is used on. An explicit Deny covering the ARN wins over any Allow; an Allow that covers nothing
the request asks for is a 403 like a Deny (DESIGN.md section 8).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from typing import Any

ACTION = "execute-api:Invoke"


class Malformed(Exception):
    """The answer is not a policy (nor a simple response): AUTHORIZER_CONFIGURATION_ERROR."""


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What one invocation said, parsed: judged against each request's ARN by ``permits``."""

    principal_id: str | None
    context: Mapping[str, Any] | None
    usage_identifier_key: str | None
    statements: tuple[Statement, ...] = ()
    authorized: bool | None = None  # a simple response's isAuthorized; None for a policy

    def permits(self, arn: str) -> bool:
        if self.authorized is not None:
            return self.authorized
        covering = [s for s in self.statements if _covers(s, arn)]
        return bool(covering) and all(s.allow for s in covering)


@functools.lru_cache(maxsize=1024)
def _pieces(glob: str) -> tuple[tuple[re.Pattern[str], int], ...]:
    """An IAM glob (``*`` any run of characters, ``?`` one character, the rest literal) as the
    pieces between its stars: each a pattern with no quantifier, and the length it matches."""
    return tuple(
        (re.compile("".join("." if c == "?" else re.escape(c) for c in piece), re.DOTALL), len(piece))
        for piece in glob.split("*")
    )


def _matches(glob: str, value: str) -> bool:
    """Whether ``value`` matches the IAM glob, in O(len(glob) x len(value)) at worst.

    Not one regex with ``.*`` per star: its backtracking is polynomial in the stars, and the ARN
    holds the path the client chose (a wildcard Deny and a 909-byte path held the event loop for
    13 s; 8 KiB would hold it for hours). The first piece must start the value and the last end
    it; each piece between is taken at its leftmost place after the one before, which is all a
    star can need (any later place leaves less room for the pieces after it).
    """
    pieces = _pieces(glob)
    first, first_width = pieces[0]
    if len(pieces) == 1:
        return first.fullmatch(value) is not None
    last, last_width = pieces[-1]
    end = len(value) - last_width
    if end < first_width or first.match(value) is None or last.fullmatch(value, end) is None:
        return False
    start = first_width
    for piece, _ in pieces[1:-1]:
        found = piece.search(value, start, end)
        if found is None:
            return False
        start = found.end()
    return True


def _covers(statement: Statement, arn: str) -> bool:
    return any(_matches(a.lower(), ACTION.lower()) for a in statement.actions) and any(
        _matches(r, arn) for r in statement.resources
    )


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Malformed(f"{what} must be a string or a list of strings")


def _context(answer: Mapping[str, Any], *, flat: bool) -> Mapping[str, Any] | None:
    """The answer's ``context``; ``flat`` (payload 1.0, REST's rule) when its values must be a
    string, number or boolean: AWS refuses an object, a list or null there, and they would
    reach ``$context.authorizer.<key>`` and the 1.0 event's flat authorizer map as nothing AWS
    could send. Payload 2.0 (HTTP APIs) passes any JSON value on, as AWS does."""
    found = answer.get("context")
    if found is None:
        return None
    if not isinstance(found, dict):
        raise Malformed("context must be an object")
    if flat:
        for name, value in found.items():
            if not isinstance(value, str | int | float):  # bool is an int
                raise Malformed(f"context value {name!r} must be a string, number or boolean")
    return found


def parse(answer: Any, *, simple: bool, version: str = "1.0") -> Answer:
    """The parsed answer; ``simple`` for a 2.0 authorizer with enableSimpleResponses.

    A policy answer must name its principal (``principalId``, a string), as AWS requires; a
    simple response has none. ``version`` is the authorizer's payloadFormatVersion."""
    if not isinstance(answer, dict):
        raise Malformed("the answer is not a JSON object")
    flat = version == "1.0"
    if simple:
        authorized = answer.get("isAuthorized")
        if not isinstance(authorized, bool):
            raise Malformed("isAuthorized must be true or false")
        return Answer(
            principal_id=None, context=_context(answer, flat=flat), usage_identifier_key=None, authorized=authorized
        )
    principal = answer.get("principalId")
    if not isinstance(principal, str):
        raise Malformed("principalId is missing or not a string")
    document = answer.get("policyDocument")
    if not isinstance(document, dict):
        raise Malformed("policyDocument is missing or not an object")
    raw = document.get("Statement")
    raw_statements = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw_statements, list) or not raw_statements:
        raise Malformed("policyDocument.Statement must be a statement or a list of them")
    statements = []
    for item in raw_statements:
        if not isinstance(item, dict):
            raise Malformed("a Statement must be an object")
        effect = item.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise Malformed("a Statement's Effect must be Allow or Deny")
        statements.append(
            Statement(
                allow=effect == "Allow",
                actions=_strings(item.get("Action"), "Action"),
                resources=_strings(item.get("Resource"), "Resource"),
            )
        )
    key = answer.get("usageIdentifierKey")
    if key is not None and not isinstance(key, str):
        raise Malformed("usageIdentifierKey must be a string")
    return Answer(
        principal_id=principal,
        context=_context(answer, flat=flat),
        usage_identifier_key=key,
        statements=tuple(statements),
    )
