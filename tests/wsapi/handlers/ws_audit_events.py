"""A real Lambda handler that keeps every WebSocket event whole, per connection.

A message ``{"of": id}`` answers with the events this process saw for connection ``id`` (a
DISCONNECT has no answer the client could see, so a later connection asks); ``{"b64": text}``
answers ``text`` as an ``isBase64Encoded`` body, as a function returns bytes.
"""

import json

SEEN = {}


def handler(event, context):
    ctx = event["requestContext"]
    SEEN.setdefault(ctx["connectionId"], []).append(event)
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    asked = json.loads(event.get("body") or "{}")
    if "b64" in asked:
        return {"statusCode": 200, "body": asked["b64"], "isBase64Encoded": True}
    return {"statusCode": 200, "body": json.dumps(SEEN.get(asked.get("of") or ctx["connectionId"], []))}
