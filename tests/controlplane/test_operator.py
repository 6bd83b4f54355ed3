"""``propylon operator`` as a real process against the real API server.

The operator compiles what ``kubectl apply`` creates into the snapshot Secret, lays out the
proxy's Deployment, Services, PodDisruptionBudget and RBAC, and writes status. No kubelet runs
here, so the data plane is a local ``propylon proxy --config-secret`` process reading that
Secret, exactly as a pod would; its Lease is what makes a Stage Ready. Backends are loopback
HTTP servers reached through ``url`` integrations.
"""

from __future__ import annotations

import json
import time

import cluster
import operator_env as op
from operator_env import CHANGE_WITHIN, GATEWAY, START_WITHIN

# ---------------------------------------------------------------- tests


def test_operator_publishes_lays_out_the_data_plane_and_follows_edits(gateway: op.Env, backend: str) -> None:
    env = gateway
    env.start_operator()
    env.plane.apply(op.api(env.app_ns, backend) + "---" + op.stage(env.app_ns))

    stage = op.eventually(
        lambda: (s := env.get("stage", "-n", env.app_ns, "dev")) and (s.get("status") or {}).get("configVersion") and s,
        CHANGE_WITHIN * 2,
        "Stage status",
    )
    version = stage["status"]["configVersion"]
    secret = env.secret()
    assert secret["metadata"]["annotations"]["propylon.dev/config-version"] == version
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "propylon"
    assert "snapshot.json" in secret["data"]
    owner = {"kind": "Secret", "name": f"{GATEWAY}-snapshot", "uid": secret["metadata"]["uid"]}

    deployment = op.eventually(lambda: env.get("deployment", "-n", env.gw_ns, GATEWAY), CHANGE_WITHIN, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["proxy", "--config-secret", f"{env.gw_ns}/{GATEWAY}-snapshot", "--drain-seconds", "25"]
    # Issue 8, item 7, as the API server stored it: the pod keeps serving while Services forget
    # it, then drains within its grace period.
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35
    assert {p["containerPort"] for p in container["ports"]} == {8080, 8081, 9090}
    for kind, name in (
        ("deployment", GATEWAY),
        ("service", GATEWAY),
        ("service", f"{GATEWAY}-internal"),
        ("poddisruptionbudget", GATEWAY),
        ("serviceaccount", f"{GATEWAY}-proxy"),
        ("role", f"{GATEWAY}-proxy"),
        ("rolebinding", f"{GATEWAY}-proxy"),
    ):
        obj = op.eventually(lambda kind=kind, name=name: env.get(kind, "-n", env.gw_ns, name), CHANGE_WITHIN, name)
        (reference,) = obj["metadata"]["ownerReferences"]
        assert {k: reference[k] for k in owner} == owner, (kind, name)
    public = env.get("service", "-n", env.gw_ns, GATEWAY)
    assert [(p["port"], p["targetPort"]) for p in public["spec"]["ports"]] == [(80, "public")]
    pdb = env.get("poddisruptionbudget", "-n", env.gw_ns, GATEWAY)
    assert pdb["spec"].get("maxUnavailable") == 1  # a single replica

    assert stage["status"]["url"] == f"http://{GATEWAY}.{env.gw_ns}.svc/dev"
    assert stage["status"]["observedGeneration"] == stage["metadata"]["generation"]
    assert op.condition(stage, "Ready")["status"] == "False"  # no proxy replica serves it yet
    api = env.get("api", "-n", env.app_ns, "pets")
    assert op.condition(api, "Ready")["status"] == "True"
    assert op.condition(api, "Accepted")["observedGeneration"] == api["metadata"]["generation"]

    _, port = env.start_proxy()
    assert op.get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hello")
    status, body = op.get(f"http://127.0.0.1:{port}/dev/files/a/b.txt")
    assert status == 200 and json.loads(body)["path"] == "/a/b.txt"
    ready = op.eventually(
        lambda: op.condition(env.get("stage", "-n", env.app_ns, "dev"), "Ready").get("status") == "True",
        30,
        "Stage Ready once the proxy's Lease shows the version",
    )
    assert ready
    assert env.get("stage", "-n", env.app_ns, "dev")["status"]["readyReplicas"] == 1

    # An edit reaches the proxy within seconds.
    env.plane.apply(op.api(env.app_ns, backend, greeting="hi again"))
    op.eventually(
        lambda: op.get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hi again"), CHANGE_WITHIN, "edit served"
    )

    # A broken edit (an Authorizer that does not exist) is reported; the last good version serves on.
    env.plane.apply(op.api(env.app_ns, backend, greeting="broken", authorizer="nosuch"))
    ready = op.eventually(
        lambda: (c := op.condition(env.get("api", "-n", env.app_ns, "pets"), "Ready")).get("status") == "False" and c,
        CHANGE_WITHIN,
        "Api Ready=False",
    )
    assert ready["reason"] == "MissingReference"
    assert "nosuch" in ready["message"]
    time.sleep(1.0)  # what a proxy would have picked up by now, had the operator published the broken edit
    assert op.get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hi again")
    events = env.get("events", "-n", env.app_ns, "--field-selector", "involvedObject.name=pets")
    assert any(e["reason"] == "MissingReference" and e["type"] == "Warning" for e in events["items"])

    # Deleting the Api removes its routes.
    env.plane.kubectl("delete", "api", "-n", env.app_ns, "pets")
    op.eventually(lambda: op.get(f"http://127.0.0.1:{port}/dev/hello")[0] == 404, CHANGE_WITHIN, "routes removed")
    stage_ready = op.eventually(
        lambda: (c := op.condition(env.get("stage", "-n", env.app_ns, "dev"), "Ready")).get("status") == "False" and c,
        CHANGE_WITHIN,
        "Stage not ready without its Api",
    )
    assert stage_ready["reason"] != "ReplicasPending"


def test_restarting_the_operator_rewrites_nothing(gateway: op.Env, backend: str) -> None:
    env = gateway
    first = env.start_operator()
    env.plane.apply(op.api(env.app_ns, backend) + "---" + op.stage(env.app_ns))

    def settled() -> dict | None:
        stage = env.get("stage", "-n", env.app_ns, "dev")
        secret = env.secret()
        if not stage or not secret or not (stage.get("status") or {}).get("configVersion"):
            return None
        return {"secret": secret, "stage": stage}

    before = op.eventually(settled, CHANGE_WITHIN * 2, "published and reported")
    time.sleep(1.5)  # let any follow-up pass (our own status writes coming back as events) finish
    before = settled()
    deployment_before = env.get("deployment", "-n", env.gw_ns, GATEWAY)
    first.stop()

    second = env.start_operator()
    time.sleep(1.5)  # a few debounce windows after the first pass
    second.alive()
    after = settled()
    assert after["secret"]["metadata"]["resourceVersion"] == before["secret"]["metadata"]["resourceVersion"]
    assert after["stage"]["metadata"]["resourceVersion"] == before["stage"]["metadata"]["resourceVersion"]
    deployment_after = env.get("deployment", "-n", env.gw_ns, GATEWAY)
    assert deployment_after["metadata"]["resourceVersion"] == deployment_before["metadata"]["resourceVersion"]
    assert "published snapshot" not in second.log()


def test_admission_webhook_refuses_what_cannot_compile(gateway: op.Env, backend: str) -> None:
    env = gateway
    port = cluster.free_port()
    name = f"{GATEWAY}.{env.gw_ns}.propylon.dev"
    env.start_operator(
        "--webhook-port",
        str(port),
        "--webhook-host",
        "127.0.0.1",
        "--webhook-addr",
        "127.0.0.1",
        "--webhook-configuration",
        name,
    )
    try:
        configuration = op.eventually(
            lambda: env.get("validatingwebhookconfiguration", name), START_WITHIN, "webhook registered"
        )
        for webhook in configuration["webhooks"]:
            # Only the watched namespace: other teams' objects never wait on this operator.
            (expression,) = webhook["namespaceSelector"]["matchExpressions"]
            assert expression["values"] == [env.app_ns]
            assert webhook["clientConfig"]["url"].startswith(f"https://127.0.0.1:{port}/validate-")
        bad_model = f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: bad-model, namespace: {env.app_ns}}}
spec:
  models:
    User: {{type: objekt}}
  routes:
    - routeKey: POST /users
      requestValidation: {{body: User}}
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
"""
        result = env.plane.apply(bad_model, check=False)
        assert result.returncode != 0
        assert "denied the request" in result.stderr
        assert f"(Api {env.app_ns}/bad-model): spec.models.User" in result.stderr
        assert "invalid JSON Schema" in result.stderr

        bad_path = f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: bad-path, namespace: {env.app_ns}}}
spec:
  routes:
    - routeKey: "GET /users/{{id"
      integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}
"""
        result = env.plane.apply(bad_path, check=False)
        assert result.returncode != 0 and "spec.routes[0].routeKey" in result.stderr

        # A reference to an object that may come later is not a refusal: status reports it.
        env.plane.apply(op.api(env.app_ns, backend, authorizer="later"))
        assert env.get("api", "-n", env.app_ns, "pets") is not None
        assert env.get("api", "-n", env.app_ns, "bad-model") is None
    finally:
        env.plane.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def test_deleting_an_authorizer_makes_its_route_refuse_not_fall_through(gateway: op.Env, backend: str) -> None:
    env = gateway
    """Issue 8, item 1, in the cluster: the route of a deleted Authorizer stays and refuses; its
    requests never reach the open greedy route beside it."""
    authorizer = f"""
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: cognito, namespace: {env.app_ns}}}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt: {{issuer: "https://issuer.example.com", audience: [app], jwksUri: "http://127.0.0.1:1/jwks.json"}}
"""
    api = f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: {env.app_ns}}}
spec:
  routes:
    - routeKey: GET /files/secret
      authorizer: cognito
      integration: {{type: HTTP_PROXY, url: "{backend}/secret"}}
    - routeKey: GET /files/{{proxy+}}
      integration: {{type: HTTP_PROXY, url: "{backend}/{{proxy}}"}}
"""
    env.start_operator()
    env.plane.apply(authorizer + "---" + api + "---" + op.stage(env.app_ns))
    _, port = env.start_proxy()
    url = f"http://127.0.0.1:{port}/dev/files/secret"
    op.eventually(lambda: op.get(url)[0] == 401, CHANGE_WITHIN * 2, "the JWT route asks for a token")
    env.plane.kubectl("delete", "authorizer", "-n", env.app_ns, "cognito")
    op.eventually(lambda: op.get(url)[0] == 500, CHANGE_WITHIN, "the route refuses once its Authorizer is gone")
    status, body = op.get(url)
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    assert op.get(f"http://127.0.0.1:{port}/dev/files/open.txt")[0] == 200  # the greedy route still serves
    ready = op.condition(env.get("api", "-n", env.app_ns, "pets"), "Ready")
    assert ready["status"] == "False" and "cognito" in ready["message"]
