"""One handler for tests/functions/test_header_case.py, written as for AWS Lambda.

It answers by the request's last path segment, so one process (``propylon.function`` or the real
emulator, which serves one handler each) covers every route: ``seen`` reports the event's
headers as a handler and Powertools read them, ``dup`` returns headers that differ only in
case, ``ctx`` reads ``context.identity``; a REQUEST authorizer event gets a policy whose context
says which X-Tenant values the authorizer was shown.
"""

import json

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)


def _authorizer(event):
    """1.0 REQUEST: allow, and tell the route what the authorizer saw of X-Tenant."""
    powertools = APIGatewayAuthorizerRequestEvent(event)
    headers = event.get("headers") or {}
    multi = event.get("multiValueHeaders") or {}
    context = {
        "names": ",".join(sorted(n for n in headers if n.lower() == "x-tenant")),
        "plain": headers.get("X-Tenant", ""),  # read as AWS's samples read it
        "every": ",".join(v for n, vs in multi.items() if n.lower() == "x-tenant" for v in vs),
        "powertools": powertools.get_header_value("x-tenant") or "",
    }
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    return {
        "principalId": "tenant",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": context,
    }


def _seen(event):
    if event.get("version") == "2.0":
        v2 = APIGatewayProxyEventV2(event)
        return {
            "headers": {n: v for n, v in event["headers"].items() if n.lower() == "x-dup"},
            "powertools": v2.headers.get("X-Dup"),
        }
    v1 = APIGatewayProxyEvent(event)
    return {
        "headers": {n: v for n, v in event["headers"].items() if n.lower() == "x-dup"},
        "multiValueHeaders": {n: v for n, v in event["multiValueHeaders"].items() if n.lower() == "x-dup"},
        "powertools": v1.headers.get("X-Dup"),
        "powertools_multi": v1.multi_value_headers.get("x-dup"),
        "authorizer": (event["requestContext"].get("authorizer") or {}),
    }


def _dup(event):
    """Headers as a merge of two dicts leaves them: one name under two spellings."""
    answer = {
        "statusCode": 201,
        "headers": {
            "content-type": "text/plain",
            "Content-Type": "application/xml",
            "location": "/a",
            "Location": "/b",
            "X-One": "single",
            "x-multi": "left out",
        },
        "body": "<a/>",
    }
    if event.get("version") != "2.0":  # multiValueHeaders is payload 1.0's
        answer["multiValueHeaders"] = {
            "X-Multi": ["1"],
            "x-MULTI": ["2"],
            "Set-Cookie": ["a=1"],
            "set-cookie": ["b=2"],
            "Content-Location": ["/x", "/y"],
        }
    return answer


def _ctx(context):
    identity = context.identity
    return {
        "identity": type(identity).__name__,
        "cognito_identity_id": identity.cognito_identity_id,
        "cognito_identity_pool_id": identity.cognito_identity_pool_id,
        "client_context": context.client_context,
    }


def app(event, context):
    if event.get("type") == "REQUEST":
        return _authorizer(event)
    path = event.get("rawPath") or event.get("path") or ""
    which = path.rstrip("/").rpartition("/")[2]
    if which == "dup":
        return _dup(event)
    found = _seen(event) if which == "seen" else _ctx(context)
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(found)}
