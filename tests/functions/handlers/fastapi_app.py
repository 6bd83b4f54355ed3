"""A FastAPI app behind Mangum: the ASGI app runs unchanged as a Lambda handler (1.0 and 2.0)."""

from fastapi import FastAPI, Header, Request, Response
from mangum import Mangum
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None, x_agent: str | None = Header(default=None)):
    return {"item_id": item_id, "q": q, "agent": x_agent}


@app.post("/items")
def create_item(item: Item, response: Response):
    response.set_cookie("last", item.name)
    response.status_code = 201
    return item


@app.post("/png")
async def png_round_trip(request: Request):
    return Response(content=await request.body(), media_type="image/png")


handler = Mangum(app, lifespan="off", api_gateway_base_path="/mangum1")
