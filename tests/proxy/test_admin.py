"""The admin listener: health, readiness, metrics after traffic, /admin auth; nothing of it
on the public or internal listeners."""

from __future__ import annotations

import asyncio
import io
import json
import re

import aiohttp

from propylon_config import model
from tests.proxy import conftest as c
from tests.proxy import scrape


async def test_readyz_waits_for_a_snapshot(start_gateway):
    gw = await start_gateway(None)
    admin = gw.addresses.urls()["admin"]
    async with aiohttp.ClientSession() as session:
        async with session.get(admin + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(admin + "/readyz") as resp:
            assert resp.status == 503
        gw.swap(c.config(c.stage([("GET /x", c.mock())])))
        async with session.get(admin + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["version"] == gw.holder.current.version


async def test_metrics_count_requests_by_route_and_class(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock()), ("GET /boom", c.mock(status=503))])))
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        for path in ("/prod/x", "/prod/x", "/prod/boom", "/prod/nope", "/elsewhere"):
            async with session.get(urls["public"] + path) as resp:
                await resp.read()
        async with session.get(urls["admin"] + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    shop = {"api": "shop/api-prod", "stage": "shop/prod"}
    requests = "propylon_requests_total"
    assert scrape.value(text, requests, **shop, route="GET /x", code_class="2xx") == 2
    assert scrape.value(text, requests, **shop, route="GET /boom", code_class="5xx") == 1
    assert scrape.value(text, requests, **shop, route="", code_class="4xx") == 1
    assert scrape.value(text, requests, api="", stage="", route="", code_class="4xx") == 1
    # The histograms have the counter's labels, code_class included (DESIGN.md section 8).
    duration = "propylon_request_duration_seconds_count"
    assert scrape.value(text, duration, **shop, route="GET /x", code_class="2xx") == 2
    assert scrape.value(text, duration, **shop, route="GET /boom", code_class="5xx") == 1
    assert scrape.value(text, duration, **shop, route="GET /x") == 0
    # Buckets run 0.25 ms ... 30 s.
    bounds = {dict(labels)["le"] for name, labels in scrape.samples(text) if name.endswith("_bucket")}
    assert {"0.00025", "30.0", "+Inf"} <= bounds
    types = scrape.families(text)
    assert types["propylon_request_duration_seconds"] == types["propylon_integration_duration_seconds"] == "histogram"
    counters = {name for name, kind in types.items() if kind == "counter"}
    assert {"propylon_requests", "propylon_throttled", "propylon_cache"} <= counters
    # Request paths never become labels.
    assert "/prod/nope" not in text and "/elsewhere" not in text


async def test_admin_paths_exist_only_on_the_admin_listener(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())], base_path="/")))
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        for listener in ("public", "internal"):
            for path in ("/healthz", "/readyz", "/metrics", "/admin/config"):
                async with session.get(urls[listener] + path) as resp:
                    assert resp.status == 404, (listener, path)
                    assert resp.headers["x-propylon-error-type"] == "RESOURCE_NOT_FOUND"


async def test_admin_without_token_answers_loopback_only(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())])))
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.addresses.urls()["admin"] + "/admin/config") as resp:
            assert resp.status == 200
            assert (await resp.json())["version"] == gw.holder.current.version
        # A forwarding header cannot make a client look remote or local: the socket peer decides.
        async with session.get(
            gw.addresses.urls()["admin"] + "/admin/config", headers={"X-Forwarded-For": "203.0.113.1"}
        ) as resp:
            assert resp.status == 200


async def test_admin_with_token_requires_bearer(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())])), admin_token="s3cret-token")
    url = gw.addresses.urls()["admin"] + "/admin/config"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 401
                assert await resp.json() == {"message": "Unauthorized"}
                assert resp.headers["x-propylon-error-type"] == "UNAUTHORIZED"
        async with session.get(url, headers={"Authorization": "Bearer s3cret-token"}) as resp:
            assert resp.status == 200
        unknown = gw.addresses.urls()["admin"] + "/admin/nothing-here"
        async with session.get(unknown, headers={"Authorization": "Bearer s3cret-token"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "Not Found"}
            assert resp.headers["x-propylon-error-type"] == "RESOURCE_NOT_FOUND"
        # Health and metrics stay open.
        seen_ids = set()
        for path in ("/metrics", "/healthz", "/readyz", "/admin/config"):
            async with session.get(gw.addresses.urls()["admin"] + path) as resp:
                assert resp.status == (401 if path == "/admin/config" else 200)
                # DESIGN.md §8: every response carries x-request-id, the admin listener's too.
                seen_ids.add(resp.headers["x-request-id"])
        assert len(seen_ids) == 4
    # A token that is not UTF-8 is a wrong token (401), not a failure of the gateway's (500).
    port = int(url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /admin/config HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\xfe\r\n")
    writer.write(b"Connection: close\r\n\r\n")
    head = await reader.readline()
    writer.close()
    assert head.startswith(b"HTTP/1.1 401"), head


async def test_private_stage_only_on_internal_listener(start_gateway):
    snapshot = c.config(
        c.stage([("GET /x", c.mock(body='{"p":"public"}'))], name="pub"),
        c.stage([("GET /x", c.mock(body='{"p":"private"}'))], name="priv", endpoint=model.Endpoint.PRIVATE),
    )
    gw = await start_gateway(snapshot)
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        async with session.get(urls["public"] + "/priv/x") as resp:
            assert resp.status == 404
        async with session.get(urls["internal"] + "/priv/x") as resp:
            assert (await resp.json()) == {"p": "private"}
        async with session.get(urls["internal"] + "/pub/x") as resp:
            assert (await resp.json()) == {"p": "public"}


async def test_access_log_line_per_request(start_gateway, backend):
    stream = io.StringIO()
    snapshot = c.config(
        c.stage([("GET /items/{id}", c.http_proxy(backend.url + "/i/{id}"))], access_log=True),
        c.stage([("GET /quiet", c.mock())], name="quiet"),
    )
    gw = await start_gateway(snapshot, log_stream=stream)
    urls = gw.addresses.urls()
    async with aiohttp.ClientSession() as session:
        async with session.get(
            urls["public"] + "/prod/items/a%20b?secret=1",
            headers={"User-Agent": "t/1", "Authorization": "Bearer do-not-log", "x-api-key": "k" * 24},
        ) as resp:
            request_id = resp.headers["x-request-id"]
            body = await resp.read()
        async with session.get(urls["public"] + "/prod/none") as resp:
            await resp.read()
        async with session.get(urls["public"] + "/quiet/quiet") as resp:
            await resp.read()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["requestId"] == request_id
    assert first["ip"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["requestTime"])
    assert first["httpMethod"] == "GET"
    assert first["routeKey"] == "GET /items/{id}"
    assert first["path"] == "/prod/items/a%20b"
    assert first["status"] == 200 and first["integrationStatus"] == 200
    assert first["protocol"] == "HTTP/1.1"
    assert first["responseLength"] == len(body)
    assert isinstance(first["responseLatencyMs"], int) and isinstance(first["integrationLatencyMs"], int)
    assert first["apiId"] == "shop/api-prod" and first["stage"] == "prod"
    assert first["userAgent"] == "t/1"
    assert first["errorType"] is None and first["canary"] is False
    for absent in ("apiKeyId", "principalId", "cache"):
        assert first[absent] is None
    assert second["status"] == 404 and second["errorType"] == "RESOURCE_NOT_FOUND"
    assert second["routeKey"] is None and second["integrationLatencyMs"] is None
    text = stream.getvalue()
    assert "do-not-log" not in text and "k" * 24 not in text


async def test_requests_refused_by_the_parser_are_counted(start_gateway):
    gw = await start_gateway(c.config(c.stage([("GET /x", c.mock())])))
    response, _ = await c.raw_request(gw.addresses.port, b"GARBAGE\r\n\r\n")
    assert response.status == 400
    async with aiohttp.ClientSession() as session, session.get(gw.addresses.urls()["admin"] + "/metrics") as resp:
        text = await resp.text()
    unmatched = {"api": "", "stage": "", "route": "", "code_class": "4xx"}
    assert scrape.value(text, "propylon_requests_total", **unmatched) == 1
