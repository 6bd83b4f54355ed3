"""A real Lambda handler that keeps every WebSocket event's authorizer, per connection.

A message answers with what this process saw for a connection (its own, or ``{"of": id}``):
CONNECT and DISCONNECT events have no answer the client could see, so a later message asks.
"""

import json

SEEN = {}


def handler(event, context):
    ctx = event["requestContext"]
    SEEN.setdefault(ctx["connectionId"], []).append(
        {"eventType": ctx["eventType"], "routeKey": ctx["routeKey"], "authorizer": ctx.get("authorizer", "absent")}
    )
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    asked = json.loads(event.get("body") or "{}").get("of") or ctx["connectionId"]
    return {"statusCode": 200, "body": json.dumps({"id": ctx["connectionId"], "events": SEEN.get(asked, [])})}
