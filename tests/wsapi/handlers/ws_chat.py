"""A real Lambda handler for WebSocket events: answers with what it was given."""

import json


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "CONNECT" and ctx["identity"].get("userAgent") == "refuse-me":
        return {"statusCode": 401}
    seen = {k: ctx[k] for k in ("routeKey", "eventType", "connectionId", "stage", "apiId")}
    seen["hasMessageId"] = bool(ctx.get("messageId"))
    seen["body"] = event.get("body")
    seen["isBase64Encoded"] = event["isBase64Encoded"]
    return {"statusCode": 200, "body": json.dumps(seen)}
