"""A Redis URL's secrets never reach a log line or an error (``limit_stores.redact``).

redis-py reads the password from the user part (which ends at the LAST ``@``) and from a
``?password=`` query parameter; both are masked, a user name alone is shown. Once through a real
``propylon serve --redis`` whose Redis is not there: the line it prints holds no secret.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from propylon_proxy.limit_stores import redact
from tests.ports import free_port
from tests.processes import PropylonProcess


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0?password=QPASS-XYZ", "redis://127.0.0.1:6379/0?password=***"),
        ("redis://u:P@SS-XYZ@127.0.0.1:6379", "redis://u:***@127.0.0.1:6379"),
        ("unix:///tmp/nosock?password=UPASS-XYZ", "unix:///tmp/nosock?password=***"),
        ("rediss://h:6380?db=1&Password=a@b-XYZ", "rediss://h:6380?db=1&Password=***"),
        ("redis://:SECRET-XYZ@h", "redis://***@h"),
        ("redis://user@h:6379/2", "redis://user@h:6379/2"),
        ("unix://:SECRET-XYZ@/tmp/redis.sock?db=2", "unix://***@/tmp/redis.sock?db=2"),
        ("redis://h:6379", "redis://h:6379"),
    ],
)
def test_redact_masks_every_password_spelling(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "XYZ" not in redact(url)


def test_serve_names_an_unreachable_redis_without_its_password(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "api.yaml").write_text(
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: a, namespace: default}\n"
        'spec:\n  routes:\n    - {routeKey: "GET /m", integration: {type: MOCK, mock: {statusCode: 200}}}\n---\n'
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod, namespace: default}\n"
        "spec: {apiRef: a}\n"
    )
    url = f"redis://u:P@SS-XYZ@127.0.0.1:{free_port()}/0?password=QPASS-XYZ"
    ports = [str(free_port()) for _ in range(3)]
    argv = ["serve", "-f", str(folder), "--port", ports[0], "--internal-port", ports[1], "--admin-port", ports[2]]
    served = PropylonProcess([*argv, "--redis", url], tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 30
        while "limit store" not in served.log() and time.monotonic() < deadline:
            served.alive()
            time.sleep(0.1)
    finally:
        served.stop()
    log = served.log()
    assert "limit store redis://u:***@127.0.0.1:" in log, log
    assert "XYZ" not in log and "P@SS" not in log, log
