"""`propylon render` as a user runs it: the snapshot on stdout, diagnostics on stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from propylon_config import codec

ROOT = Path(__file__).resolve().parents[2]

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop}
spec:
  routes:
    - routeKey: "GET /users/{id}"
      integration: {type: HTTP_PROXY, service: {name: users, port: 80}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  apiRef: users
  throttle: {rateLimit: 5, burstLimit: 10}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: users-1, namespace: shop, labels: {kubernetes.io/service-name: users}}
ports: [{port: 80}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: v1
kind: Secret
metadata: {name: alice, namespace: shop, labels: {propylon.dev/usage-plan: basic}}
stringData: {value: "alice-secret-key-value-0123456789"}
data: {other: YWxpY2Utc2VjcmV0LWJhc2U2NC12YWx1ZQ==}
"""


def propylon(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("propylon")
    command = [script] if script else [sys.executable, "-m", "propylon"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_render_prints_the_snapshot_as_json(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    done = propylon("render", "-f", str(tmp_path / "all.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    snapshot = codec.loads(done.stdout)
    assert snapshot.version == codec.content_version(snapshot)
    (stage,) = snapshot.stages
    assert [r.route_key for r in stage.routes] == ["GET /users/{id}"]
    assert stage.routes[0].throttle is not None and stage.routes[0].throttle.rate_limit == 5.0
    (endpoints,) = snapshot.endpoints
    assert endpoints.key == "shop/users:80"
    assert [(a.address, a.port) for a in endpoints.addresses] == [("127.0.0.1", 80)]
    assert json.loads(done.stdout) == json.loads(codec.dumps(snapshot))
    assert done.stdout.startswith("{\n  ")  # indent 2


def test_render_yaml_is_the_same_data(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    as_json = json.loads(propylon("render", "-f", str(tmp_path / "all.yaml")).stdout)
    done = propylon("render", "-f", str(tmp_path / "all.yaml"), "--output", "yaml")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == as_json


def test_render_never_prints_secret_data(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    for output in ("json", "yaml"):
        done = propylon("render", "-f", str(tmp_path / "all.yaml"), "-o", output)
        assert "alice-secret-key-value" not in done.stdout + done.stderr
        assert "YWxpY2Utc2VjcmV0" not in done.stdout + done.stderr


def test_render_with_diagnostics_still_prints_what_would_be_served(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    (tmp_path / "broken.yaml").write_text(
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: beta, namespace: shop}\n"
        "spec: {apiRef: nowhere}\n"
    )
    broken = str(tmp_path / "broken.yaml")
    done = propylon("render", "-f", str(tmp_path / "all.yaml"), "-f", broken)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{broken}: document 1 (Stage shop/beta): spec.apiRef: Api shop/nowhere not found; the Stage serves nothing"
    ]
    snapshot = codec.loads(done.stdout)
    assert [s.id for s in snapshot.stages] == ["shop/prod"]


def test_render_shows_the_gateway_wide_limit_the_flags_set(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    default = codec.loads(propylon("render", "-f", str(tmp_path / "all.yaml")).stdout)
    limit = default.settings.gateway_throttle
    assert (limit.rate_limit, limit.burst_limit) == (10000, 5000)
    done = propylon("render", "-f", str(tmp_path / "all.yaml"), "--gateway-rate", "250", "--gateway-burst", "40")
    assert done.returncode == 0, done.stderr
    throttle = codec.loads(done.stdout).settings.gateway_throttle
    assert (throttle.rate_limit, throttle.burst_limit) == (250.0, 40)
    assert codec.loads(done.stdout).version != default.version  # a different limit is a different snapshot
