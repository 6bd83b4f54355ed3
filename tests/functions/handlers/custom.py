"""A handler written for an AWS "Lambda custom integration": the event is whatever the request
template rendered (not a proxy event), the return value is plain data, and errors are raised
with messages an integration response's selectionPattern can match."""

CALLS = {"n": 0}


def items(event, context):
    CALLS["n"] += 1
    wanted = event.get("id") if isinstance(event, dict) else None
    if wanted == "missing":
        raise LookupError(f"Not found: item {wanted}")
    if wanted == "crash":
        raise RuntimeError("the store is down")
    return {"items": [{"id": wanted or "none"}, {"id": "other"}], "event": event, "calls": CALLS["n"]}
