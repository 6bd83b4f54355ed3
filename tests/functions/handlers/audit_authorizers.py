"""Authorizer handlers written as for AWS Lambda, for tests/functions/test_audit_authorizers.py.

Each appends what it was given to the file named by ``AUDIT_AUTHORIZER_EVENTS`` (one JSON line
per invocation), so a test sees exactly what the gateway showed the function, and how often it
was asked.
"""

import json
import os

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerResponseV2,
)


def _record(name, event):
    with open(os.environ["AUDIT_AUTHORIZER_EVENTS"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"handler": name, "event": event}) + "\n")


def _policy(effect, resource, principal="user", **extra):
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {"principalId": principal, "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}, **extra}


def tenant(event, context):
    """1.0: tenant A only, read as most handlers read it: the single-value maps (the last value)."""
    _record("tenant", event)
    found = (event.get("headers") or {}).get("X-Tenant") or (event.get("queryStringParameters") or {}).get("tenant")
    return _policy("Allow" if found == "A" else "Deny", event["methodArn"])


def tenant_v2(event, context):
    """2.0 simple: a request that names tenant A among its (comma-joined) values."""
    _record("tenant_v2", event)
    found = (event.get("headers") or {}).get("x-tenant", "")
    return {"isAuthorized": "A" in found.split(","), "context": {"tenant": found}}


def by_path(event, context):
    """1.0: the path parameter ``id`` decides."""
    _record("by_path", event)
    effect = "Deny" if (event.get("pathParameters") or {}).get("id") == "deny" else "Allow"
    return _policy(effect, event["methodArn"])


def anyone(event, context):
    """Allows every request it is asked about (1.0 methodArn or 2.0 routeArn)."""
    _record("anyone", event)
    return _policy("Allow", event.get("methodArn") or event.get("routeArn"))


def answers(event, context):
    """Policies good and bad, chosen by the X-Answer header (a TOKEN authorizer's token)."""
    _record("answers", event)
    arn = event.get("methodArn") or event.get("routeArn")
    which = event.get("authorizationToken") or (event.get("headers") or {}).get("x-answer")
    if which == "ok":
        return _policy("Allow", arn, context={"s": "x", "n": 1, "f": 1.5, "b": True})
    if which == "noprincipal":
        answer = _policy("Allow", arn)
        del answer["principalId"]
        return answer
    if which == "intprincipal":
        return _policy("Allow", arn, principal=5)
    if which == "nestedctx":
        return _policy("Allow", arn, context={"o": {"a": 1}})
    if which == "listctx":
        return _policy("Allow", arn, context={"l": [1, 2]})
    if which == "nullctx":
        return _policy("Allow", arn, context={"n": None})
    if which == "powertools":
        # Powertools' REST helper, as a handler written for AWS builds its answer.
        _, _, rest = arn.partition("arn:aws:execute-api:")
        region, account, api_stage = rest.split(":", 2)
        api_id, stage = api_stage.split("/")[:2]
        policy = APIGatewayAuthorizerResponse(
            principal_id="pt-user",
            region=region,
            aws_account_id=account,
            api_id=api_id,
            stage=stage,
            context={"tier": "gold", "n": 2, "admin": False},
        )
        policy.allow_all_routes()
        return policy.asdict()
    raise Exception("Unauthorized")


def simple_powertools(event, context):
    """2.0 simple response through Powertools' helper, with a nested context (HTTP APIs allow it)."""
    _record("simple_powertools", event)
    return APIGatewayAuthorizerResponseV2(authorize=True, context={"m": {"a": 1}, "l": ["x"]}).asdict()


def connect(event, context):
    """A WebSocket $connect authorizer as AWS's documentation writes one: it allows the
    methodArn it is given when the event is a WebSocket CONNECT."""
    _record("connect", event)
    if event.get("requestContext", {}).get("eventType") != "CONNECT":
        raise Exception("Unauthorized")
    return _policy("Allow", event["methodArn"], context={"route": event["requestContext"]["routeKey"]})


def nothing(event, context):
    """A FUNCTION handler that returns None: ``null`` on the wire, a 200 ``null`` for 2.0."""
    return None
