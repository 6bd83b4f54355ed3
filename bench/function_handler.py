"""The trivial Lambda handler behind bench/run.py's propylon-function target."""


def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "ok"}
