"""The real AWS Lambda Runtime Interface Emulator with awslambdaric, behind the gateway.

This is exactly how an AWS Lambda container image runs a Python handler (``aws-lambda-rie
python -m awslambdaric module.handler``); the gateway invokes it the same way it invokes
``propylon.function``. The emulator is built by ``tools/rie/build.sh`` from the Go module proxy
and cached under ``~/.cache/propylon/``; without it (or without awslambdaric) the test skips
and says how to get them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

REPO = Path(__file__).resolve().parents[2]
_VERSION = re.search(r"^RIE_VERSION=(\S+)$", (REPO / "tools/rie/build.sh").read_text(), re.M)
assert _VERSION is not None
RIE = Path(os.environ.get("PROPYLON_RIE_BIN", Path.home() / f".cache/propylon/rie-{_VERSION.group(1)}/bin"))
RIE = RIE / "aws-lambda-rie"


def _rie(spec: str, tmp: Path) -> harness.Process:
    port, runtime_api = harness.free_port(), harness.free_port()
    argv = [str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}"]
    argv += ["--runtime-api-address", f"127.0.0.1:{runtime_api}", sys.executable, "-m", "awslambdaric", spec]
    return harness.Process(argv, tmp / f"rie-{spec}.log", port, cwd=harness.HANDLERS)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not RIE.exists():
        pytest.skip(f"no {RIE}: run tools/rie/build.sh (needs Go and the Go module proxy)")
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.skip("awslambdaric is not installed (pip install awslambdaric)")
    tmp = tmp_path_factory.mktemp("rie")
    echo, boom = _rie("plain.echo", tmp), _rie("plain.boom", tmp)
    served = None
    try:
        echo.wait()
        boom.wait()
        folder = tmp / "manifests"
        folder.mkdir()
        (folder / "api.yaml").write_text(f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: rie, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /echo/{{id}}"
      integration: {{type: FUNCTION, url: "http://127.0.0.1:{echo.port}", payloadFormatVersion: "1.0"}}
    - routeKey: "GET /boom"
      integration: {{type: FUNCTION, url: "http://127.0.0.1:{boom.port}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: rie, basePath: /prod}}
""")
        served = harness.serve(folder, tmp).wait()
        yield served.port
    finally:
        if served is not None:
            served.stop()
        echo.stop()
        boom.stop()


def test_a_handler_under_the_real_emulator_answers_through_the_gateway(gateway: int) -> None:
    status, headers, body = harness.request(gateway, "GET", "/prod/echo/42?q=1")
    assert status == 200, body
    assert harness.header(headers, "set-cookie") == []  # payload 1.0 has no cookies field
    assert harness.header(headers, "x-multi") == ["a", "b"]
    seen = json.loads(body)
    assert seen["event"]["pathParameters"] == {"id": "42"}
    assert seen["event"]["queryStringParameters"] == {"q": "1"}
    assert seen["context"]["function_name"] == "test_function"  # the emulator's default name


def test_a_raise_under_the_real_emulator_is_502(gateway: int) -> None:
    status, headers, body = harness.request(gateway, "GET", "/prod/boom")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
    assert harness.header(headers, "x-propylon-error-type") == ["INTEGRATION_FAILURE"]
