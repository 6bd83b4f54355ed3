"""A real Lambda handler whose $connect answer the upgrade picks (``?case=``); messages echo.

CONNECT answers ``CONNECT[case]`` (well-formed refusals and malformed ``statusCode`` values);
a MESSAGE answers ``<routeKey>:<body length>:<first 24 characters>``, so a test sees which
route a message took without the whole body coming back. A message naming ``"surrogate"``
(or ``"bare-surrogate"``) answers a body with a lone surrogate, JSON's ``"\\ud800"``, which no
UTF-8 encoder takes as is (with a ``statusCode``, or without one).
"""

CONNECT = {
    "ok": {"statusCode": 200},
    "ok-str": {"statusCode": "200"},
    "refuse-int": {"statusCode": 403},
    "refuse-str": {"statusCode": "403"},
    "float": {"statusCode": 401.0},
    "null": {"statusCode": None, "body": "go away"},
    "999": {"statusCode": 999},
    "word": {"statusCode": "forbidden"},
    "bool": {"statusCode": True},
    "list": {"statusCode": [403]},
}


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "CONNECT":
        return CONNECT[(event.get("queryStringParameters") or {}).get("case", "ok")]
    if ctx["eventType"] == "MESSAGE":
        body = event.get("body") or ""
        if '"surrogate"' in body:
            return {"statusCode": 200, "body": "a\ud800b"}
        if '"bare-surrogate"' in body:
            return {"body": "a\ud800b"}
        return {"statusCode": 200, "body": f"{ctx['routeKey']}:{len(body)}:{body[:24]}"}
    return {"statusCode": 200}
