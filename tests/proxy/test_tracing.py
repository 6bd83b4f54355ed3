"""When span export is on, and that the gateway costs nothing and fails nothing when it is off.

The export itself, to a real OTLP receiver, is tests/serve/test_serve_otlp.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from propylon_proxy import tracing


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),  # the SDK would default to otlp; the gateway stays off until asked
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_export_is_wanted_only_when_the_standard_environment_asks(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on


def test_grpc_is_refused_rather_than_sent_to_the_wrong_port(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert tracing.from_env(environ) is None
    assert "only http/protobuf" in caplog.text


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_off_means_opentelemetry_is_never_imported() -> None:
    done = _run(
        "import os, sys\n"
        "for name in [n for n in os.environ if n.startswith('OTEL_')]: del os.environ[name]\n"
        "from propylon.commands import serve\n"
        "from propylon_proxy import gateway\n"
        "gw = gateway.Gateway()\n"
        "print(gw.runtime.spans, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None []"


def test_configured_without_the_packages_serves_and_says_why() -> None:
    done = _run(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"  # as if the otel extra were not installed
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from propylon_proxy import tracing\n"
        "print(tracing.from_env({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'}))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "OTLP span export is configured but" in done.stderr and "propylon[otel]" in done.stderr
