"""Header names are case-insensitive, in function events and in function responses alike.

Through ``propylon serve`` and a real handler (tests/functions/handlers/header_case.py) run by
``python -m propylon.function`` and, when it is cached, by the real Lambda Runtime Interface
Emulator with awslambdaric (as in test_rie.py), so the two runtimes are held to one answer:

- payload 1.0 merges ``X-Dup: 1`` and ``x-dup: 2`` into one name, spelled as it came first,
  with both values in ``multiValueHeaders`` and the last in ``headers`` (as AWS does); 2.0
  lower-cases and comma-joins; a REQUEST authorizer's 1.0 event does the same;
- a response's headers that differ only in case are sent once: ``headers`` keeps the last
  value, ``multiValueHeaders`` joins the lists, and a single-valued field (Content-Type,
  Location, ...) is never sent twice;
- ``context.identity`` is a CognitoIdentity whose fields are None, ``client_context`` None.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest

REPO = Path(__file__).resolve().parents[2]
_VERSION = re.search(r"^RIE_VERSION=(\S+)$", (REPO / "tools/rie/build.sh").read_text(), re.M)
assert _VERSION is not None
RIE = Path(os.environ.get("PROPYLON_RIE_BIN", Path.home() / f".cache/propylon/rie-{_VERSION.group(1)}/bin"))
RIE = RIE / "aws-lambda-rie"
HAVE_RIE = RIE.exists() and importlib.util.find_spec("awslambdaric") is not None

RUNTIMES = [
    "pf",
    pytest.param("rie", marks=pytest.mark.skipif(not HAVE_RIE, reason=f"no {RIE} or awslambdaric")),
]


def _rie(spec: str, tmp: Path) -> harness.Process:
    port, runtime_api = harness.free_port(), harness.free_port()
    argv = [str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}"]
    argv += ["--runtime-api-address", f"127.0.0.1:{runtime_api}", sys.executable, "-m", "awslambdaric", spec]
    return harness.Process(argv, tmp / f"rie-{spec}.log", port, cwd=harness.HANDLERS)


def _manifests(ports: dict[str, int]) -> str:
    text = ""
    routes = ""
    for runtime, port in ports.items():
        url = f"http://127.0.0.1:{port}"
        v1 = f'{{type: FUNCTION, url: "{url}", payloadFormatVersion: "1.0"}}'
        v2 = f'{{type: FUNCTION, url: "{url}", payloadFormatVersion: "2.0"}}'
        text += (
            "apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\n"
            f"metadata: {{name: tenant-{runtime}, namespace: shop}}\n"
            'spec:\n  type: REQUEST\n  identitySource: ["$request.header.X-Tenant"]\n'
            f'  function: {{url: "{url}", resultTtlSeconds: 300}}\n---\n'
        )
        routes += (
            f'    - {{routeKey: "GET /{runtime}/v1/seen", integration: {v1}}}\n'
            f'    - {{routeKey: "GET /{runtime}/v2/seen", integration: {v2}}}\n'
            f'    - {{routeKey: "GET /{runtime}/authz/seen", authorizer: tenant-{runtime}, integration: {v1}}}\n'
            f'    - {{routeKey: "GET /{runtime}/v1/dup", integration: {v1}}}\n'
            f'    - {{routeKey: "GET /{runtime}/v2/dup", integration: {v2}}}\n'
            f'    - {{routeKey: "GET /{runtime}/v2/ctx", integration: {v2}}}\n'
        )
    return (
        text
        + "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: cases, namespace: shop}\n"
        + "spec:\n  routes:\n"
        + routes
        + "---\napiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod, namespace: shop}\n"
        + "spec: {apiRef: cases, basePath: /prod}\n"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("header-case")
    runtimes = {"pf": harness.function("header_case.app", tmp)}
    if HAVE_RIE:
        runtimes["rie"] = _rie("header_case.app", tmp)
    served = None
    try:
        for process in runtimes.values():
            process.wait()
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(_manifests({name: p.port for name, p in runtimes.items()}))
        served = harness.serve(folder, tmp).wait()
        yield served.port
    finally:
        if served is not None:
            served.stop()
        for process in runtimes.values():
            process.stop()


def _get(port: int, path: str, *headers: tuple[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A GET with these headers exactly as given: repeated names and their spelling kept."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def _seen(port: int, path: str, *headers: tuple[str, str]) -> Any:
    status, _, body = _get(port, path, *headers)
    assert status == 200, body
    return json.loads(body)


# 1. Events: one header name however the client spelled it.


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_1_0_event_merges_header_names_that_differ_only_in_case(gateway: int, runtime: str) -> None:
    seen = _seen(gateway, f"/prod/{runtime}/v1/seen", ("X-Dup", "1"), ("x-dup", "2"))
    assert seen["headers"] == {"X-Dup": "2"}  # the first spelling, the last value
    assert seen["multiValueHeaders"] == {"X-Dup": ["1", "2"]}
    assert (seen["powertools"], seen["powertools_multi"]) == ("2", ["1", "2"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_2_0_event_lower_cases_and_joins_them(gateway: int, runtime: str) -> None:
    seen = _seen(gateway, f"/prod/{runtime}/v2/seen", ("X-Dup", "1"), ("x-dup", "2"))
    assert seen == {"headers": {"x-dup": "1,2"}, "powertools": "1,2"}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_request_authorizer_is_shown_every_value_under_one_name(gateway: int, runtime: str) -> None:
    path = f"/prod/{runtime}/authz/seen"
    told = _seen(gateway, path, ("X-Tenant", "A"), ("x-tenant", "B"))["authorizer"]
    # The value AWS's event shows under the name, the last: what the identity source gives too.
    assert {k: told[k] for k in ("names", "plain", "every", "powertools")} == {
        "names": "X-Tenant",
        "plain": "B",
        "every": "A,B",
        "powertools": "B",
    }
    # $request.header.X-Tenant finds the header however it is spelled.
    told = _seen(gateway, path, ("x-tenant", "C"))["authorizer"]
    assert (told["names"], told["every"]) == ("x-tenant", "C")


# 2. Responses: a header name is sent once.


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_response_headers_that_differ_only_in_case_are_sent_once_1_0(gateway: int, runtime: str) -> None:
    status, headers, body = _get(gateway, f"/prod/{runtime}/v1/dup")
    assert (status, body) == (201, b"<a/>")
    assert harness.header(headers, "content-type") == ["application/xml"]
    assert harness.header(headers, "location") == ["/b"]
    assert harness.header(headers, "x-one") == ["single"]
    # multiValueHeaders' lists are joined, and win over a name in headers.
    assert harness.header(headers, "x-multi") == ["1", "2"]
    assert harness.header(headers, "set-cookie") == ["a=1", "b=2"]
    # A single-valued field listed twice is sent once, with the last value.
    assert harness.header(headers, "content-location") == ["/y"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_response_headers_that_differ_only_in_case_are_sent_once_2_0(gateway: int, runtime: str) -> None:
    status, headers, body = _get(gateway, f"/prod/{runtime}/v2/dup")
    assert (status, body) == (201, b"<a/>")
    assert harness.header(headers, "content-type") == ["application/xml"]
    assert harness.header(headers, "location") == ["/b"]
    assert harness.header(headers, "x-multi") == ["left out"]


# 3. context.identity as AWS's runtime gives it.


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_context_identity_is_a_cognito_identity_of_nones(gateway: int, runtime: str) -> None:
    assert _seen(gateway, f"/prod/{runtime}/v2/ctx") == {
        "identity": "CognitoIdentity",
        "cognito_identity_id": None,
        "cognito_identity_pool_id": None,
        "client_context": None,
    }
