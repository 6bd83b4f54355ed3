"""Powertools event-handler apps, as their documentation writes them: REST (1.0), HTTP (2.0)."""

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.shared.cookies import Cookie
from pydantic import BaseModel


class Todo(BaseModel):
    title: str
    done: bool = False


def _routes(app):
    @app.get("/todos/<todo_id>")
    def get_todo(todo_id: int, verbose: Annotated[bool, Query()] = False):
        return {"id": todo_id, "verbose": verbose, "agent": app.current_event.get_header_value("x-agent")}

    @app.post("/todos")
    def create_todo(todo: Todo):
        return Response(
            status_code=201,
            content_type="application/json",
            body=todo.model_dump_json(),
            cookies=[Cookie(name="last", value=todo.title)],
        )

    return app


rest = _routes(APIGatewayRestResolver(enable_validation=True, strip_prefixes=["/rest"]))
http = _routes(APIGatewayHttpResolver(enable_validation=True))


def rest_handler(event, context):
    return rest.resolve(event, context)


def http_handler(event, context):
    return http.resolve(event, context)
