"""The operator authenticated by a ServiceAccount token, as the chart's Pod is in a real cluster.

The other operator tests log in with client certificates; a Pod has a bearer token instead (the
projected ServiceAccount token). Here the token is a real one, issued by the API server's
TokenRequest API (``kubectl create token``) for the chart's ServiceAccount, so the API server
authenticates it and the chart's RBAC applies. Without the token on the operator's requests the
API server sees ``system:anonymous`` and refuses everything: no snapshot, no status.

The operator process reads the token from a kubeconfig ``token:`` user; the in-cluster loader
(which reads a token file, as in the Pod) is exercised in process with the same token, since
its file path under /var/run/secrets cannot be pointed elsewhere for a child process.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import kubernetes
import operator_env as op
import pytest
from kubernetes.config.incluster_config import InClusterConfigLoader
from test_operator_chart import Release, _account

from propylon_operator import kube

pytestmark = pytest.mark.controlplane


def _token(env: op.Env, namespace: str, account: str) -> str:
    """A bound token for ``namespace/account`` from the TokenRequest API, as kubelet projects one."""
    token = env.plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, token  # a JWT
    return token


def _token_kubeconfig(env: op.Env, name: str, token: str) -> pathlib.Path:
    """A kubeconfig whose user is nothing but ``token`` (no client certificate)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "propylon-test",
                "cluster": {"server": env.plane.server, "certificate-authority": str(env.plane.dir / "ca.crt")},
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "propylon-test", "context": {"cluster": "propylon-test", "user": name}}],
        "current-context": "propylon-test",
    }
    path = env.workdir / f"kubeconfig-token-{name}"  # no colons: the client splits the path on them
    path.write_text(json.dumps(config))
    return path


def _who(env: op.Env, kubeconfig: pathlib.Path) -> str:
    answer = env.plane.kubectl("auth", "whoami", "--kubeconfig", str(kubeconfig), "-o", "json").stdout
    return str(json.loads(answer)["status"]["userInfo"]["username"])


def _in_cluster_configuration(env: op.Env, token: str, token_file: pathlib.Path) -> kubernetes.client.Configuration:
    """What ``load_incluster_config`` makes in the Pod, from a token file and the cluster CA."""
    token_file.write_text(token)
    configuration = kubernetes.client.Configuration()
    host, port = env.plane.server.removeprefix("https://").rsplit(":", 1)
    InClusterConfigLoader(
        token_filename=str(token_file),
        cert_filename=str(env.plane.dir / "ca.crt"),
        environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
    ).load_and_set(configuration)
    return configuration


def _installed(env: op.Env) -> tuple[Release, str]:
    """The chart installed into ``env``, and the name of its operator's ServiceAccount."""
    release = Release(env)
    release.install()
    return release, str(release.pod["serviceAccountName"])


async def _username(client: kube.Client) -> str:
    """Who the API server says ``client`` is (a SelfSubjectReview)."""
    review: dict[str, Any] = await client.create(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def start_chart_operator_with_token(env: op.Env) -> tuple[Release, op.Process]:
    """The chart installed, and its operator run with the chart's arguments as its ServiceAccount,
    authenticated by a token only; an Api and a Stage applied for it to serve."""
    release, account = _installed(env)
    kubeconfig = _token_kubeconfig(env, account, _token(env, env.gw_ns, account))
    assert _who(env, kubeconfig) == _account(env.gw_ns, account)
    operator = op.Process(
        [*release.args, "--kubeconfig", str(kubeconfig)],
        env.workdir / "operator.log",
        env={"POD_NAMESPACE": env.gw_ns},
    )
    env.processes.append(operator)
    env.plane.apply(op.api(env.app_ns, "http://127.0.0.1:9") + "---" + op.stage(env.app_ns))
    return release, operator


def test_the_chart_operator_works_under_its_service_account_token(gateway: op.Env) -> None:
    env = gateway
    release, operator = start_chart_operator_with_token(env)

    # kopf's watches (its login) and the operator's own writes (kube.Client) both carry the token.
    secret = op.eventually(
        lambda: operator.alive() and env.get("secret", "-n", env.gw_ns, release.settings().snapshot_secret),
        op.START_WITHIN,
        "the snapshot Secret published under the token",
    )
    assert secret["metadata"]["labels"]  # published by the operator, not left over
    stage = op.eventually(
        lambda: ((env.get("stage", "-n", env.app_ns, "dev") or {}).get("status") or {}).get("configVersion") and True,
        op.CHANGE_WITHIN * 2,
        "the Stage's status written under the token",
    )
    assert stage
    api = env.get("api", "-n", env.app_ns, "pets")
    assert op.condition(api, "Accepted").get("status") == "True", api
    op.eventually(
        lambda: env.get("deployment", "-n", env.gw_ns, op.GATEWAY), op.CHANGE_WITHIN, "the proxy Deployment applied"
    )
    log = operator.log()
    for refusal in ("system:anonymous", "Forbidden", "Unauthorized"):
        assert refusal not in log, log[-4000:]


async def test_in_cluster_token_file_authenticates_the_operators_client(gateway: op.Env) -> None:
    """The Pod's loader keeps the token under api_key["BearerToken"] (kubernetes >= 36.0.1)."""
    env = gateway
    _, account = _installed(env)
    token = _token(env, env.gw_ns, account)
    configuration = _in_cluster_configuration(env, token, env.workdir / "token")

    client = kube.Client(configuration)
    try:
        # Allowed to the chart's ServiceAccount, refused to system:anonymous.
        found = await client.list(kube.object_path("propylon.dev/v1alpha1", "apis", env.app_ns))
        assert found == []
        assert await _username(client) == _account(env.gw_ns, account)
    finally:
        await client.close()


async def test_a_refreshed_token_is_used_on_the_next_request(gateway: op.Env) -> None:
    """``refresh_api_key_hook`` is how the client renews a rotated or expired token: honoured per request."""
    env = gateway
    _, account = _installed(env)
    configuration = _in_cluster_configuration(env, "not-a-token", env.workdir / "token")
    fresh = _token(env, env.gw_ns, account)
    renewed: list[str] = []

    def refresh(cfg: kubernetes.client.Configuration) -> None:
        # As the in-cluster loader's hook does after kubelet rotated the file.
        for key in list(cfg.api_key):  # whichever key this client version's loader uses
            cfg.api_key[key] = f"bearer {fresh}"
        renewed.append(fresh)

    configuration.refresh_api_key_hook = refresh
    client = kube.Client(configuration)
    try:
        assert await _username(client) == _account(env.gw_ns, account)
        assert renewed
    finally:
        await client.close()
