"""``sourceIp`` behind trusted proxies is an IP address (DESIGN.md section 8, forwarding headers:
"the last untrusted hop when the peer is trusted").

The gateway trusts its loopback peer here, so the client's X-Forwarded-For is believed: a hop
written with a port is matched against the trusted list and reported without it, and a hop that
is no address (``unknown``, a host name, junk) never becomes ``sourceIp``, which Powertools'
event models refuse. Seen as users see it: a mapping of ``$context.identity.sourceIp`` to a
header of an HTTP_PROXY backend, and the event of a FUNCTION that Powertools' models parse.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel, APIGatewayProxyEventV2Model

from propylon_config import model
from propylon_proxy import forwarding
from tests.proxy import conftest as c

A, T = model.MappingAction, model.MappingTarget

# X-Forwarded-For as the client sent it -> sourceIp; the peer (127.0.0.1) and 10/8 are trusted.
CASES = [
    ("203.0.113.7", "203.0.113.7"),
    ("203.0.113.7:51234", "203.0.113.7"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:db8::2", "2001:db8::2"),
    ("198.51.100.1, 10.0.0.7:8080", "198.51.100.1"),  # a trusted hop with a port is still trusted
    ("10.0.0.7:51234", "10.0.0.7"),  # every hop trusted: the farthest, without its port
    ("garbage", "127.0.0.1"),
    ("<script>", "127.0.0.1"),
    ("client.example.com", "127.0.0.1"),
    ("unknown", "127.0.0.1"),
    ("198.51.100.1, junk, 10.0.0.2", "10.0.0.2"),  # the nearest address a trusted proxy vouched for
    ("198.51.100.1, 999.1.1.1", "127.0.0.1"),
]
TRUSTED = "127.0.0.0/8,10.0.0.0/8"


@pytest.mark.parametrize(("sent", "expected"), CASES)
def test_source_ip_is_an_address_and_has_no_port(sent: str, expected: str) -> None:
    trusted = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
    assert forwarding.source_ip("127.0.0.1", [("X-Forwarded-For", sent)], trusted) == expected


def test_an_untrusted_peer_is_the_source_whatever_it_forwards() -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert forwarding.source_ip("192.0.2.9", [("X-Forwarded-For", "203.0.113.7")], trusted) == "192.0.2.9"


@pytest.fixture
async def function_url() -> AsyncIterator[str]:
    """A function service answering each invocation with the event's sourceIp and whether
    Powertools' model for its payload version parses the event."""

    async def invoke(request: web.Request) -> web.Response:
        event = await request.json()
        v2 = event.get("version") == "2.0"
        context = event["requestContext"]
        source = context["http"]["sourceIp"] if v2 else context["identity"]["sourceIp"]
        try:
            parse(event=event, model=APIGatewayProxyEventV2Model if v2 else APIGatewayProxyEventModel)
            verdict = "parses"
        except Exception as exc:  # the verdict is the test's answer
            verdict = type(exc).__name__
        return web.json_response({"statusCode": 200, "body": json.dumps({"sourceIp": source, "model": verdict})})

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/function/invocations", invoke)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_source_ip_as_mappings_and_functions_see_it(start_gateway, backend, function_url):
    mapped = c.http_proxy(
        backend.url + "/x",
        request_parameters=(
            model.ParameterMapping(
                action=A.OVERWRITE, target=T.HEADER, name="X-Source", value="$context.identity.sourceIp"
            ),
        ),
    )
    routes = [("GET /mapped", mapped)]
    for version in ("1.0", "2.0"):
        function = model.Integration(
            type=model.IntegrationType.FUNCTION, url=function_url, payload_format_version=version
        )
        routes.append((f"GET /fn{version[0]}", function))
    gw = await start_gateway(c.config(c.stage(routes)), trusted=TRUSTED)
    base = gw.addresses.urls()["public"] + "/prod"
    async with aiohttp.ClientSession() as session:
        for sent, expected in CASES:
            headers = {"X-Forwarded-For": sent}
            async with session.get(base + "/mapped", headers=headers) as resp:
                assert resp.status == 200
            seen = [v for n, v in backend.received[-1]["headers"] if n.lower() == "x-source"]
            assert seen == [expected], sent
            for path in ("/fn1", "/fn2"):
                async with session.get(base + path, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    assert await resp.json() == {"sourceIp": expected, "model": "parses"}, (sent, path)
