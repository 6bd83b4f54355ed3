""" "IAM for pods": a JWT Authorizer whose issuer is the cluster's service-account issuer.

The test API server signs ServiceAccount tokens (TokenRequest API, ``kubectl create token``) and
publishes its keys at ``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` over TLS.
Anonymous access to those two paths is granted the usual way (a ClusterRoleBinding of
``system:service-account-issuer-discovery`` to ``system:unauthenticated``); the proxy trusts
the cluster CA (in a pod, the mounted ``ca.crt``; here ``PROPYLON_EXTRA_CA_FILE``). A token for
the Authorizer's audience reaches the backend with its ``sub``; one for another audience is 401.
"""

from __future__ import annotations

import json

import operator_env as op
import pytest

pytestmark = pytest.mark.controlplane


def test_a_service_account_token_passes_for_its_audience_only(
    gateway: op.Env, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gateway
    plane = env.plane
    issuer = f"https://127.0.0.1:{plane.port}/"
    binding = f"propylon-discovery-{env.app_ns}"
    plane.kubectl(
        "create", "clusterrolebinding", binding,
        "--clusterrole=system:service-account-issuer-discovery", "--group=system:unauthenticated",
    )  # fmt: skip
    try:
        plane.kubectl("create", "serviceaccount", "-n", env.app_ns, "orders")
        plane.apply(f"""
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: pods, namespace: {env.app_ns}}}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt: {{issuer: "{issuer}", audience: [propylon-gateway], algorithms: [RS256]}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: {env.app_ns}}}
spec:
  routes:
    - routeKey: GET /whoami
      authorizer: pods
      integration:
        type: HTTP_PROXY
        url: "{backend}/whoami"
        requestParameters: {{"overwrite:header.X-Caller": "$context.authorizer.claims.sub"}}
---
{op.stage(env.app_ns)}
""")
        env.start_operator()
        monkeypatch.setenv("PROPYLON_EXTRA_CA_FILE", str(plane.dir / "ca.crt"))
        _, port = env.start_proxy()
        url = f"http://127.0.0.1:{port}/dev/whoami"

        def token(audience: str) -> str:
            made = plane.kubectl("create", "token", "-n", env.app_ns, "orders", f"--audience={audience}")
            return made.stdout.strip()

        good = token("propylon-gateway")
        op.eventually(lambda: op.get(url, good)[0] == 200, op.CHANGE_WITHIN * 3, "the SA token passes")
        sent = {name.lower(): value for name, value in json.loads(op.get(url, good)[1])["headers"].items()}
        assert sent["x-caller"] == f"system:serviceaccount:{env.app_ns}:orders"
        assert op.get(url, token("someone-else"))[0] == 401
        assert op.get(url, good[:-4] + "AAAA")[0] == 401
    finally:
        plane.kubectl("delete", "clusterrolebinding", binding, check=False)
