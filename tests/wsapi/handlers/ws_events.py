"""A real Lambda handler that keeps every WebSocket event's authorizer, per connection.

A message answers with what this process saw for a connection (its own, or ``{"of": id}``):
CONNECT and DISCONNECT events have no answer the client could see, so a later message asks.
"""

import json

SEEN = {}


def handler(event, context):
    ctx = event["requestContext"]
    seen = {"eventType": ctx["eventType"], "routeKey": ctx["routeKey"], "authorizer": ctx.get("authorizer", "absent")}
    if ctx["eventType"] == "CONNECT":
        headers = event.get("headers") or {}
        seen["headers"] = {k: v for k, v in headers.items() if k.lower() in ("x-user", "x-room")}
        seen["multiValueHeaders"] = {
            k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() == "x-room"
        }
        seen["query"] = event.get("queryStringParameters")
        seen["multiQuery"] = event.get("multiValueQueryStringParameters")
    SEEN.setdefault(ctx["connectionId"], []).append(seen)
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    asked = json.loads(event.get("body") or "{}").get("of") or ctx["connectionId"]
    return {"statusCode": 200, "body": json.dumps({"id": ctx["connectionId"], "events": SEEN.get(asked, [])})}
