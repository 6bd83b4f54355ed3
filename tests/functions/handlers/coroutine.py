"""A coroutine handler: not something Lambda's Python runtime can call."""


async def handler(event, context):
    return {"statusCode": 200}
