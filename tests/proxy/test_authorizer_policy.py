"""IAM policy evaluation for authorizer functions: globs, explicit Deny, malformed answers."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from propylon_proxy.authorizers import policy

ARN = "arn:aws:execute-api:propylon:shop:users/prod/GET/users/42"


def _answer(*statements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"principalId": "u", "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)}, **extra}


def _stmt(effect: str, resource: Any, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    ("resource", "permits"),
    [
        (ARN, True),
        ("arn:aws:execute-api:propylon:shop:users/*", True),
        ("arn:aws:execute-api:propylon:shop:users/prod/GET/users/4?", True),
        ("arn:aws:execute-api:propylon:shop:users/prod/GET/users/?", False),
        ("arn:aws:execute-api:propylon:shop:users/prod/POST/*", False),
        ("arn:aws:execute-api:propylon:shop:users/prod/GET/users/[42]", False),  # brackets are literal
        (["arn:aws:execute-api:propylon:shop:other/*", "*"], True),
    ],
)
def test_allow_covers_by_glob(resource: Any, permits: bool) -> None:
    assert policy.parse(_answer(_stmt("Allow", resource)), simple=False).permits(ARN) is permits


def test_explicit_deny_wins_and_actions_must_cover_invoke() -> None:
    both = _answer(_stmt("Allow", "*"), _stmt("Deny", "arn:aws:execute-api:propylon:shop:users/prod/GET/*"))
    assert not policy.parse(both, simple=False).permits(ARN)
    assert policy.parse(both, simple=False).permits(ARN.replace("/GET/", "/PUT/"))
    assert policy.parse(_answer(_stmt("Allow", "*", "execute-api:*")), simple=False).permits(ARN)
    assert not policy.parse(_answer(_stmt("Allow", "*", "s3:GetObject")), simple=False).permits(ARN)


def test_context_principal_and_usage_key_are_read() -> None:
    answer = policy.parse(_answer(_stmt("Allow", "*"), context={"a": 1}, usageIdentifierKey="k"), simple=False)
    assert (answer.principal_id, answer.context, answer.usage_identifier_key) == ("u", {"a": 1}, "k")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        [],
        {"principalId": "u"},
        _answer(),
        _answer(_stmt("Maybe", "*")),
        _answer(_stmt("Allow", 7)),
        _answer(_stmt("Allow", "*"), context=["x"]),
        {"principalId": 5, "policyDocument": {"Statement": [_stmt("Allow", "*")]}},
    ],
)
def test_malformed_answers(raw: Any) -> None:
    with pytest.raises(policy.Malformed):
        policy.parse(raw, simple=False)


def test_simple_responses() -> None:
    assert policy.parse({"isAuthorized": True, "context": {"u": 1}}, simple=True).permits(ARN)
    assert not policy.parse({"isAuthorized": False}, simple=True).permits(ARN)
    with pytest.raises(policy.Malformed):
        policy.parse({"isAuthorized": "yes"}, simple=True)


def _glob_as_regex(glob: str, value: str) -> bool:
    """The reference: an IAM glob read as a regular expression (``*`` any run, ``?`` one)."""
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(pattern, value, re.DOTALL) is not None


def test_globs_match_as_the_regular_expression_reading_does() -> None:
    chooser = random.Random(15)
    for _ in range(50_000):
        glob = "".join(chooser.choice("ab/:*?") for _ in range(chooser.randint(0, 7)))
        value = "".join(chooser.choice("ab/:") for _ in range(chooser.randint(0, 9)))
        assert policy._matches(glob, value) == _glob_as_regex(glob, value), (glob, value)


@pytest.mark.timeout(30)  # a hang guard, not a speed figure: the regex form ran for hours on this
def test_a_long_path_under_a_wildcard_deny_is_judged_at_once() -> None:
    # The ARN holds the path the client chose. With one regex per glob, a Deny with four stars
    # backtracked polynomially in the path: ":/" 450 times held the event loop for 13 s.
    answer = policy.parse(
        _answer(_stmt("Allow", "arn:aws:execute-api:*:*:*"), _stmt("Deny", "arn:aws:execute-api:*:*:*/*/DELETE/*")),
        simple=False,
    )
    arn = "arn:aws:execute-api:propylon:shop:users/prod/GET/" + ":/" * 4000
    assert answer.permits(arn)
    assert not answer.permits("arn:aws:execute-api:propylon:shop:users/prod/DELETE/" + ":/" * 4000)
