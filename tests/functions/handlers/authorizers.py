"""Authorizer handlers written as for AWS Lambda: the identity decides what the policy says."""

import time

CALLS = {"n": 0}


def _policy(effect, resource, user, extra=None):
    answer = {
        "principalId": user,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"user": user, "calls": CALLS["n"], "admin": user == "alice"},
    }
    answer.update(extra or {})
    return answer


def request(event, context):
    """REQUEST (1.0 or 2.0): the x-user header is the identity; what comes back depends on it."""
    CALLS["n"] += 1
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    user = headers.get("x-user", "")
    arn = event.get("methodArn") or event.get("routeArn")
    base = arn.split("/", 1)[0]
    if user == "nobody":
        raise Exception("Unauthorized")
    if user == "crash":
        raise ValueError("the authorizer broke")
    if user == "empty":
        return None
    if user == "slow":
        time.sleep(2)
    if user == "mallory":  # an Allow for everything and an explicit Deny for this route: Deny wins
        answer = _policy("Allow", base + "/*", user)
        answer["policyDocument"]["Statement"].append(
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn}
        )
        return answer
    if user == "elsewhere":  # an Allow that covers another route only
        return _policy("Allow", base + "/*/GET/other/?", user)
    if user == "echo":  # what the gateway sent, back in the context
        return _policy("Allow", arn, user, {"context": {"event": str(sorted(event))}})
    # GET routes, and a WebSocket $connect (whose ARN is .../<stage>/$connect, as AWS's).
    allowed = [base + "/*/GET/*", base + "/*/$connect"]
    return _policy("Allow", allowed, user, {"usageIdentifierKey": headers.get("x-usage-key")})


def simple(event, context):
    """2.0 simple responses."""
    CALLS["n"] += 1
    user = (event.get("headers") or {}).get("x-user", "")
    return {"isAuthorized": user == "alice", "context": {"user": user, "calls": CALLS["n"]}}
