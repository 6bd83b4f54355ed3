"""Template string methods count Java's UTF-16 code units (DESIGN.md section 2.5): AWS runs
templates on Java, where a character beyond the BMP (an emoji) is two units, so ``length()``,
``indexOf`` and ``lastIndexOf`` answer unit indexes and ``charAt``/``substring`` take them.
Rendered by the in-process gateway into the body a real loopback backend receives."""

from __future__ import annotations

import json

import aiohttp
import pytest

from propylon_config import model
from tests.proxy.conftest import config, stage

TEMPLATE = (
    "length=$s.length() indexOf=$s.indexOf('b') from=$s.indexOf('b', 3) last=$s.lastIndexOf('b')"
    " emoji=$s.indexOf('\U0001f600', 1) sub=[$s.substring(2)] mid=[$s.substring(0, 2)] char=[$s.charAt(2)]"
    " half=[$s.substring(1)]"
)


async def _rendered(start_gateway, backend, text: str, template: str = TEMPLATE) -> str:
    templated = model.Integration(
        type=model.IntegrationType.HTTP,
        url=backend.url + "/echo",
        request_templates=(("application/json", "#set($s = $input.path('$.s'))" + template),),
    )
    gw = await start_gateway(config(stage([("POST /t", templated)])))
    url = gw.addresses.urls()["public"] + "/prod/t"
    sent = {"data": json.dumps({"s": text}), "headers": {"Content-Type": "application/json"}}
    async with aiohttp.ClientSession() as session, session.post(url, **sent) as resp:
        assert resp.status == 200
        received = json.loads(await resp.read())
    return str(received["body"]).encode("latin-1").decode("utf-8")  # the echo reports bytes as latin-1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # As Java answers: the emoji is units 0 and 1, "b" is unit 2; substring(1) starts inside
        # the pair, and the lone half it keeps is written "?" as Java's UTF-8 encoder writes it.
        (
            "\U0001f600b\U0001f600b",
            "length=6 indexOf=2 from=5 last=5 emoji=3 sub=[b\U0001f600b] mid=[\U0001f600]"
            " char=[b] half=[?b\U0001f600b]",
        ),
        # BMP-only text (the fast path) answers as before: one unit per character.
        (
            "\u00e9b\u00e9b",
            "length=4 indexOf=1 from=3 last=3 emoji=-1 sub=[\u00e9b] mid=[\u00e9b] char=[\u00e9] half=[b\u00e9b]",
        ),
        ("abab", "length=4 indexOf=1 from=3 last=3 emoji=-1 sub=[ab] mid=[ab] char=[a] half=[bab]"),
    ],
    ids=["astral", "bmp", "ascii"],
)
async def test_string_methods_count_utf16_units(start_gateway, backend, text: str, expected: str) -> None:
    assert await _rendered(start_gateway, backend, text) == expected


async def test_from_index_forms_answer_as_java(start_gateway, backend) -> None:
    """Java's ``lastIndexOf(str, fromIndex)`` finds the last match starting at or before it, and
    a negative ``fromIndex`` means 0 for ``indexOf`` (Python's would count it from the end)."""
    template = "[$s.lastIndexOf('b', 4)] [$s.lastIndexOf('b', 1)] [$s.lastIndexOf('b', -1)] [$s.indexOf('b', -2)]"
    assert await _rendered(start_gateway, backend, "\U0001f600b\U0001f600b", template) == "[2] [-1] [-1] [2]"
