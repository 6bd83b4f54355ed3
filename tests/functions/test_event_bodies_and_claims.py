"""EventShape: a JWT's claims as AWS's string map, and a content-coded body as the bytes sent.

Amazon API Gateway hands a function's handler ``requestContext.authorizer.claims`` (1.0) and
``authorizer.jwt.claims`` (2.0) as strings (``"exp": "1796610016"``); handlers written for it
split and parse them so. A body sent with ``Content-Encoding: gzip`` is not text of its
Content-Type, so it is base64-encoded rather than decoded as UTF-8 and lost (DESIGN.md §8:
bodies are forwarded as sent).
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest

from tests.functions.test_event_headers import _ctx, _shape

CLAIMS = {"sub": "alice", "exp": 1796610016, "email_verified": True, "groups": ["admin", "ops"], "ratio": 0.5}


def _claims(event: dict[str, Any], version: str) -> Any:
    authorizer = event["requestContext"]["authorizer"]
    return authorizer["claims"] if version == "1.0" else authorizer["jwt"]["claims"]


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_jwt_claims_reach_the_event_as_text(version: str) -> None:
    ctx = _ctx([("Host", "api.example")])
    ctx.claims = CLAIMS
    ctx.principal_id = "alice"
    assert _claims(_shape(version).build(ctx, None), version) == {
        "sub": "alice",
        "exp": "1796610016",
        "email_verified": "true",
        "groups": '["admin","ops"]',
        "ratio": "0.5",
    }


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("coding", ["gzip", "GZIP", " deflate "])
def test_a_content_coded_body_is_base64_whatever_its_type(version: str, coding: str) -> None:
    sent = gzip.compress(b'{"a": 1}')
    ctx = _ctx([("Host", "api.example"), ("Content-Type", "application/json"), ("Content-Encoding", coding)])
    event = _shape(version).build(ctx, sent)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == sent


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_an_identity_coded_text_body_stays_text(version: str) -> None:
    ctx = _ctx([("Host", "api.example"), ("Content-Type", "application/json"), ("Content-Encoding", "identity")])
    event = _shape(version).build(ctx, b'{"a": 1}')
    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)
