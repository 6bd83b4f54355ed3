"""An HS256 JWT Authorizer in the cluster: the operator's install sealing secret at work.

The operator seals the Authorizer's shared secret into the snapshot under its install sealing
secret and keeps that secret beside the snapshot (``authorizer-sealing``); the proxy reads it
from the same Secret and opens the sealed value. A token signed with the shared secret passes,
one signed with another secret is refused, and the Authorizer reports Ready=True.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import operator_env as op
import pytest

pytestmark = pytest.mark.controlplane

SHARED = "a-shared-secret-of-thirty-two-b!"
ISSUER = "https://issuer.internal"


def _token(secret: str, *, sub: str = "svc-a") -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "sub": sub, "aud": "app", "exp": now + 300, "iat": now}, secret, "HS256")


def test_an_hs256_authorizer_verifies_in_the_cluster(gateway: op.Env) -> None:
    env = gateway
    env.plane.apply(f"""
apiVersion: v1
kind: Secret
metadata: {{name: jwt-secret, namespace: {env.app_ns}}}
stringData: {{secret: "{SHARED}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: internal, namespace: {env.app_ns}}}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt:
    issuer: {ISSUER}
    audience: [app]
    algorithms: [HS256]
    secretRef: {{name: jwt-secret, key: secret}}
---
{op.api(env.app_ns, "http://127.0.0.1:9", authorizer="internal")}
---
{op.stage(env.app_ns)}
""")
    env.start_operator()
    _, port = env.start_proxy()
    url = f"http://127.0.0.1:{port}/dev/hello"
    op.eventually(lambda: op.get(url, _token(SHARED))[0] == 200, op.CHANGE_WITHIN * 2, "an HS256 token passes")
    assert op.get(url, _token(SHARED))[1] == "hello"
    assert op.get(url, _token("another-secret-of-thirty-two-by!"))[0] == 401
    assert op.get(url, "not-a-token")[0] == 401

    ready = op.eventually(
        lambda: (
            (c := op.condition(env.get("authorizer", "-n", env.app_ns, "internal"), "Ready")).get("status") == "True"
            and c
        ),
        op.CHANGE_WITHIN,
        "the Authorizer is Ready",
    )
    assert isinstance(ready, dict)

    # The sealing secret travels beside the snapshot, and neither it nor the shared secret is in it.
    data = (env.secret() or {})["data"]
    sealing = base64.b64decode(data["authorizer-sealing"])
    snapshot = base64.b64decode(data["snapshot.json"])
    assert len(sealing) >= 16 and sealing not in snapshot
    assert SHARED.encode() not in snapshot
    assert json.loads(snapshot)["version"]
