"""The pure parts of integration responses (DESIGN.md §2.5): which template an ``Accept`` picks,
which response a value selects, and how an answer's body is decoded for a template. The
behaviour through a running gateway is tests/serve/test_integration_responses.py."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from propylon_config import model
from propylon_proxy import integration_responses, replies
from propylon_proxy.integrations import answers


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, []),
        ("", []),
        ("application/xml", ["application/xml"]),
        ("Text/HTML, application/xml;q=0.9, */*;q=0.8", ["text/html", "application/xml", "*/*"]),
        ("a/b;q=0.1, c/d", ["c/d", "a/b"]),
        ("a/b;q=0, c/d;q=bad, e/f", ["e/f"]),
    ],
)
def test_accepted_media_types_in_order_of_preference(accept: str | None, expected: list[str]) -> None:
    assert integration_responses.accepted(accept) == expected


def _responses(*items: model.IntegrationResponse) -> integration_responses.Responses:
    return integration_responses.Responses(items, "/x")


def test_select_matches_whole_values_in_order_and_falls_back_to_the_default() -> None:
    chosen = _responses(
        model.IntegrationResponse(selection_pattern="4\\d\\d", status_code=400),
        model.IntegrationResponse(selection_pattern="404", status_code=410),
        model.IntegrationResponse(status_code=200),
        model.IntegrationResponse(selection_pattern="Not found.*", status_code=404),
    )
    assert chosen.select("404") is not None and chosen.select("404").status == 400  # the first match
    assert chosen.select("4040").status == 200  # no whole match: the default
    assert chosen.select("Not found: 7").status == 404  # after the default in the list, still a match
    assert chosen.select(None).status == 200  # a success only ever selects the default
    assert _responses(model.IntegrationResponse(selection_pattern="5\\d\\d", status_code=502)).select("200") is None


def test_template_for_falls_back_to_json_then_the_first() -> None:
    templates = (("text/plain", "t"), ("application/json", "j"))
    prepared = _responses(model.IntegrationResponse(response_templates=templates)).select(None)
    assert prepared is not None
    assert prepared.template_for("text/plain")[0] == "text/plain"
    assert prepared.template_for("image/png")[0] == "application/json"
    only = _responses(model.IntegrationResponse(response_templates=(("text/csv", "c"),))).select(None)
    assert only is not None and only.template_for(None)[0] == "text/csv"


def _read(body: bytes, coding: str | None, limit: int = 1000) -> bytes | replies.Refusal:
    headers = [("Content-Encoding", coding)] if coding else []
    return asyncio.run(answers.read(replies.Reply(status=200, headers=headers, body=body), limit))


@pytest.mark.parametrize(
    ("encoded", "coding"),
    [
        (b'{"a": 1}', None),
        (gzip.compress(b'{"a": 1}'), "gzip"),
        (zlib.compress(b'{"a": 1}'), "deflate"),
        (zlib.compress(b'{"a": 1}')[2:-4], "deflate"),  # raw deflate, as some servers send it
    ],
)
def test_answers_are_decoded_for_templates(encoded: bytes, coding: str | None) -> None:
    assert _read(encoded, coding) == b'{"a": 1}'


@pytest.mark.parametrize(
    ("encoded", "coding"),
    [
        (b"x" * 10, "br"),  # a coding the gateway cannot read
        (gzip.compress(b"x" * 5000), "gzip"),  # inflates past the limit
        (b"not gzip", "gzip"),
    ],
)
def test_answers_that_cannot_be_read_refuse(encoded: bytes, coding: str) -> None:
    refused = _read(encoded, coding)
    assert isinstance(refused, replies.Refusal)
    assert refused.error_type == "API_CONFIGURATION_ERROR"
