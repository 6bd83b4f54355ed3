"""An authorizer function's answer as AWS reads it (DESIGN.md §2.3, §8): a policy names its
principal, and a payload 1.0 context holds only strings, numbers and booleans; anything else is
``Malformed`` (500 AUTHORIZER_CONFIGURATION_ERROR). A 2.0 answer's context may hold any JSON, and
a simple response has no principal."""

from __future__ import annotations

from typing import Any

import pytest

from propylon_proxy.authorizers import policy

ARN = "arn:aws:execute-api:propylon:shop:users/prod/GET/users/42"
STATEMENT = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": ARN}


def _policy(**extra: Any) -> dict[str, Any]:
    return {"principalId": "u", "policyDocument": {"Version": "2012-10-17", "Statement": [STATEMENT]}, **extra}


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("principal", [None, 5, ["u"]])
def test_a_policy_without_a_string_principal_is_malformed(version: str, principal: Any) -> None:
    answer = _policy()
    if principal is None:
        del answer["principalId"]
    else:
        answer["principalId"] = principal
    with pytest.raises(policy.Malformed, match="principalId"):
        policy.parse(answer, simple=False, version=version)


@pytest.mark.parametrize("value", [{"a": 1}, [1], None])
def test_a_1_0_context_value_must_be_a_string_number_or_boolean(value: Any) -> None:
    with pytest.raises(policy.Malformed, match="context value 'o'"):
        policy.parse(_policy(context={"s": "x", "o": value}), simple=False, version="1.0")


def test_a_1_0_context_of_strings_numbers_and_booleans_is_read() -> None:
    found = {"s": "x", "n": 1, "f": 1.5, "b": True}
    answer = policy.parse(_policy(context=found), simple=False, version="1.0")
    assert (answer.principal_id, answer.context, answer.permits(ARN)) == ("u", found, True)


def test_a_2_0_context_may_hold_any_json() -> None:
    nested = {"o": {"a": 1}, "l": [1], "n": None}
    assert policy.parse(_policy(context=nested), simple=False, version="2.0").context == nested
    simple = policy.parse({"isAuthorized": True, "context": nested}, simple=True, version="2.0")
    assert (simple.principal_id, simple.context, simple.permits(ARN)) == (None, nested, True)
