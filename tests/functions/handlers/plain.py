"""Plain handlers: the event echoed back, a raise, a malformed answer, a slow one, validation."""

import base64
import json
import time

from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel, APIGatewayProxyEventV2Model


def echo(event, context):
    """The event and some context attributes, as a 2.0 structured answer with cookies."""
    seen = {
        "event": event,
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "remaining": context.get_remaining_time_in_millis(),
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
        },
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": json.dumps(seen),
    }


def validate(event, context):
    """Parse the event with Powertools' own models; 200 when it fits, 422 with the errors."""
    model = APIGatewayProxyEventV2Model if event.get("version") == "2.0" else APIGatewayProxyEventModel
    try:
        parsed = parse(event=event, model=model)
    except ValidationError as exc:
        return {"statusCode": 422, "body": exc.json()}
    return {"statusCode": 200, "body": json.dumps({"model": model.__name__, "body": parsed.body})}


def bare(event, context):
    """A 2.0 return value without statusCode: a 200 JSON body."""
    return {"hello": event["rawPath"]}


def text(event, context):
    return "just text"


def png(event, context):
    """An image/png round trip: the request body decoded, answered base64-encoded."""
    data = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
    }


def boom(event, context):
    raise ValueError("boom")


def malformed(event, context):
    return {"statusCode": "teapot", "body": {"not": "a string"}}


def slow(event, context):
    time.sleep(float((event.get("queryStringParameters") or {}).get("s", "2")))
    return {"statusCode": 200, "body": "late"}
