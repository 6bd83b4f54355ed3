"""The gateway-wide limit through `propylon serve`: set by --gateway-rate/--gateway-burst.

A rate of 0.01/s refills one token per 100 s, so the test needs no clock: two quick requests
take the burst of 2 and the third, on any route, is the section-3 429 THROTTLED.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.serve.test_serve import API, STAGE, Served, _run


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(API.format(hello_type="MOCK", version="v1"))
    (folder / "stage.yaml").write_text(STAGE.format(color="blue"))
    return folder


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_third_quick_request_is_throttled_gateway_wide(tmp_path: Path) -> None:
    served = Served(_folder(tmp_path), tmp_path, "--gateway-rate", "0.01", "--gateway-burst", "2")
    try:
        assert _get(served.url("/live/stable"))[0] == 200
        assert _get(served.url("/live/hello"))[0] == 200
        status, headers, body = _get(served.url("/live/stable"))
        assert status == 429
        assert json.loads(body) == {"message": "Too Many Requests"}
        assert headers["x-propylon-error-type"] == "THROTTLED"
        assert int(headers["Retry-After"]) >= 1
        metrics = _get(f"http://127.0.0.1:{served.admin}/metrics")[2].decode()
        assert any('reason="gateway"' in line and "propylon_throttled_total" in line for line in metrics.splitlines())
    finally:
        served.stop()


def test_without_the_flags_the_default_limit_admits_them(tmp_path: Path) -> None:
    served = Served(_folder(tmp_path), tmp_path)
    try:
        assert [_get(served.url("/live/stable"))[0] for _ in range(5)] == [200] * 5
    finally:
        served.stop()


def test_bad_values_are_refused_naming_the_flag(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    for flag, value in (("--gateway-rate", "0"), ("--gateway-rate", "-3"), ("--gateway-burst", "0")):
        done = _run("-f", str(folder), flag, value)
        assert done.returncode == 2
        assert f"argument {flag}" in done.stderr
