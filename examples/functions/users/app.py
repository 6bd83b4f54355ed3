"""The users handler from the Lambda example (a REST API proxy handler), table in memory.

It dispatches on ``httpMethod``/``path``/``pathParameters`` exactly as written for AWS; only the
DynamoDB table is replaced by a dict so it runs anywhere:

    python -m propylon.function app.lambda_handler --path examples/functions/users --port 9000
"""

import json

TABLE: dict[str, dict] = {"1": {"id": "1", "name": "Ada"}}


def lambda_handler(event, context):
    """REST API handler with Lambda proxy integration."""
    http_method = event["httpMethod"]
    path = event["path"]
    path_params = event.get("pathParameters") or {}
    try:
        if http_method == "GET" and path == "/users":
            return get_all_users()
        elif http_method == "GET" and "id" in path_params:
            return get_user(path_params["id"])
        elif http_method == "POST" and path == "/users":
            body = json.loads(event["body"])
            return create_user(body)
        else:
            return response(404, {"error": "Not Found"})
    except Exception as e:
        print(f"Error: {e}")
        return response(500, {"error": str(e)})


def get_all_users():
    return response(200, list(TABLE.values()))


def get_user(user_id):
    if user_id in TABLE:
        return response(200, TABLE[user_id])
    return response(404, {"error": "User not found"})


def create_user(data):
    TABLE[data["id"]] = data
    return response(201, {"message": "User created", "user": data})


def response(status_code, body):
    """Format a response for the API Gateway proxy integration."""
    return {
        "statusCode": status_code,
        "headers": {
            "Content-Type": "application/json",
            "Access-Control-Allow-Origin": "*",  # CORS
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
        },
        "body": json.dumps(body, default=str),
    }
