"""``propylon operator`` as a real process against the real API server.

The operator compiles what ``kubectl apply`` creates into the snapshot Secret, lays out the
proxy's Deployment, Services, PodDisruptionBudget and RBAC, and writes status. No kubelet runs
here, so the data plane is a local ``propylon proxy --config-secret`` process reading that
Secret, exactly as a pod would; its Lease is what makes a Stage Ready. Backends are loopback
HTTP servers reached through ``url`` integrations.
"""

from __future__ import annotations

import http.server
import json
import pathlib
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import cluster
import pytest

from tests import processes

CHANGE_WITHIN = 5.0  # seconds an edit may take to reach the proxy (operator debounce + proxy watch)
START_WITHIN = 40.0
GATEWAY = "gw"
REPLICA = "operator-test-0"


# ---------------------------------------------------------------- helpers


def _eventually(check: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what} (last: {last!r})")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def _get_json(plane: cluster.ControlPlane, *args: str) -> dict | None:
    result = plane.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _condition(obj: dict | None, type_: str) -> dict:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return condition
    return {}


# The other tests of this tier use it under this name.
_Process = processes.PropylonProcess


class Env:
    """One gateway: an app namespace the operator watches, a gateway namespace, and processes."""

    def __init__(self, plane: cluster.ControlPlane, workdir: pathlib.Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.plane = plane
        self.workdir = workdir
        self.app_ns = f"app-{suffix}"
        self.gw_ns = f"gw-{suffix}"
        for namespace in (self.app_ns, self.gw_ns):
            plane.kubectl("create", "namespace", namespace)
        self.watched = self.app_ns  # the namespace the operator watches
        self.processes: list[_Process] = []
        self.webhook_port: int | None = None

    def start_operator(self, *extra: str) -> _Process:
        argv = [
            "operator",
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--namespace",
            self.watched,
            "--gateway-name",
            GATEWAY,
            "--gateway-namespace",
            self.gw_ns,
            "--replicas",
            "1",
            "--standalone",
            *extra,
        ]
        process = _Process(argv, self.workdir / f"operator-{len(self.processes)}.log")
        self.processes.append(process)
        _eventually(
            lambda: process.alive() and "first pass done" in process.log(), START_WITHIN, "operator's first pass"
        )
        return process

    def start_proxy(
        self, *, secret: str = f"{GATEWAY}-snapshot", kubeconfig: pathlib.Path | None = None
    ) -> tuple[_Process, int]:
        """A local ``propylon proxy`` reading ``secret`` (as ``kubeconfig``'s user: admin by default)."""
        port, internal, admin = cluster.free_port(), cluster.free_port(), cluster.free_port()
        argv = [
            "proxy",
            "--config-secret",
            f"{self.gw_ns}/{secret}",
            "--kubeconfig",
            str(kubeconfig or self.plane.kubeconfig),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--internal-port",
            str(internal),
            "--admin-port",
            str(admin),
        ]
        process = _Process(argv, self.workdir / "proxy.log", env={"POD_NAME": REPLICA})
        self.processes.append(process)
        _eventually(
            lambda: process.alive() and _get(f"http://127.0.0.1:{admin}/readyz")[0] == 200, START_WITHIN, "proxy ready"
        )
        return process, port

    def get(self, *args: str) -> dict | None:
        return _get_json(self.plane, *args)

    def secret(self) -> dict | None:
        return self.get("secret", "-n", self.gw_ns, f"{GATEWAY}-snapshot")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for namespace in (self.app_ns, self.gw_ns):
            self.plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def env(control_plane: cluster.ControlPlane, tmp_path: pathlib.Path) -> Iterator[Env]:
    made = Env(control_plane, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def backend() -> Iterator[str]:
    """A loopback HTTP server that says which path it was asked for."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"backend": "loopback", "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _api(namespace: str, backend: str, *, greeting: str = "hello", authorizer: str | None = None) -> str:
    auth = f"\n      authorizer: {authorizer}" if authorizer else ""
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /hello{auth}
      integration:
        type: MOCK
        mock: {{statusCode: 200, headers: {{Content-Type: text/plain}}, body: "{greeting}"}}
    - routeKey: GET /files/{{proxy+}}
      integration:
        type: HTTP_PROXY
        url: "{backend}/{{proxy}}"
"""


def _stage(namespace: str) -> str:
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: {namespace}}}
spec:
  apiRef: pets
  basePath: /dev
"""


# ---------------------------------------------------------------- tests


def test_operator_publishes_lays_out_the_data_plane_and_follows_edits(env: Env, backend: str) -> None:
    env.start_operator()
    env.plane.apply(_api(env.app_ns, backend) + "---" + _stage(env.app_ns))

    stage = _eventually(
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

    deployment = _eventually(lambda: env.get("deployment", "-n", env.gw_ns, GATEWAY), CHANGE_WITHIN, "Deployment")
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
        obj = _eventually(lambda kind=kind, name=name: env.get(kind, "-n", env.gw_ns, name), CHANGE_WITHIN, name)
        (reference,) = obj["metadata"]["ownerReferences"]
        assert {k: reference[k] for k in owner} == owner, (kind, name)
    public = env.get("service", "-n", env.gw_ns, GATEWAY)
    assert [(p["port"], p["targetPort"]) for p in public["spec"]["ports"]] == [(80, "public")]
    pdb = env.get("poddisruptionbudget", "-n", env.gw_ns, GATEWAY)
    assert pdb["spec"].get("maxUnavailable") == 1  # a single replica

    assert stage["status"]["url"] == f"http://{GATEWAY}.{env.gw_ns}.svc/dev"
    assert stage["status"]["observedGeneration"] == stage["metadata"]["generation"]
    assert _condition(stage, "Ready")["status"] == "False"  # no proxy replica serves it yet
    api = env.get("api", "-n", env.app_ns, "pets")
    assert _condition(api, "Ready")["status"] == "True"
    assert _condition(api, "Accepted")["observedGeneration"] == api["metadata"]["generation"]

    _, port = env.start_proxy()
    assert _get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hello")
    status, body = _get(f"http://127.0.0.1:{port}/dev/files/a/b.txt")
    assert status == 200 and json.loads(body)["path"] == "/a/b.txt"
    ready = _eventually(
        lambda: _condition(env.get("stage", "-n", env.app_ns, "dev"), "Ready").get("status") == "True",
        30,
        "Stage Ready once the proxy's Lease shows the version",
    )
    assert ready
    assert env.get("stage", "-n", env.app_ns, "dev")["status"]["readyReplicas"] == 1

    # An edit reaches the proxy within seconds.
    env.plane.apply(_api(env.app_ns, backend, greeting="hi again"))
    _eventually(lambda: _get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hi again"), CHANGE_WITHIN, "edit served")

    # A broken edit (an Authorizer that does not exist) is reported; the last good version serves on.
    env.plane.apply(_api(env.app_ns, backend, greeting="broken", authorizer="nosuch"))
    ready = _eventually(
        lambda: (c := _condition(env.get("api", "-n", env.app_ns, "pets"), "Ready")).get("status") == "False" and c,
        CHANGE_WITHIN,
        "Api Ready=False",
    )
    assert ready["reason"] == "MissingReference"
    assert "nosuch" in ready["message"]
    time.sleep(1.0)  # what a proxy would have picked up by now, had the operator published the broken edit
    assert _get(f"http://127.0.0.1:{port}/dev/hello") == (200, "hi again")
    events = env.get("events", "-n", env.app_ns, "--field-selector", "involvedObject.name=pets")
    assert any(e["reason"] == "MissingReference" and e["type"] == "Warning" for e in events["items"])

    # Deleting the Api removes its routes.
    env.plane.kubectl("delete", "api", "-n", env.app_ns, "pets")
    _eventually(lambda: _get(f"http://127.0.0.1:{port}/dev/hello")[0] == 404, CHANGE_WITHIN, "routes removed")
    stage_ready = _eventually(
        lambda: (c := _condition(env.get("stage", "-n", env.app_ns, "dev"), "Ready")).get("status") == "False" and c,
        CHANGE_WITHIN,
        "Stage not ready without its Api",
    )
    assert stage_ready["reason"] != "ReplicasPending"


def test_restarting_the_operator_rewrites_nothing(env: Env, backend: str) -> None:
    first = env.start_operator()
    env.plane.apply(_api(env.app_ns, backend) + "---" + _stage(env.app_ns))

    def settled() -> dict | None:
        stage = env.get("stage", "-n", env.app_ns, "dev")
        secret = env.secret()
        if not stage or not secret or not (stage.get("status") or {}).get("configVersion"):
            return None
        return {"secret": secret, "stage": stage}

    before = _eventually(settled, CHANGE_WITHIN * 2, "published and reported")
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


def test_admission_webhook_refuses_what_cannot_compile(env: Env, backend: str) -> None:
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
        configuration = _eventually(
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
        env.plane.apply(_api(env.app_ns, backend, authorizer="later"))
        assert env.get("api", "-n", env.app_ns, "pets") is not None
        assert env.get("api", "-n", env.app_ns, "bad-model") is None
    finally:
        env.plane.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def test_deleting_an_authorizer_makes_its_route_refuse_not_fall_through(env: Env, backend: str) -> None:
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
    env.plane.apply(authorizer + "---" + api + "---" + _stage(env.app_ns))
    _, port = env.start_proxy()
    url = f"http://127.0.0.1:{port}/dev/files/secret"
    _eventually(lambda: _get(url)[0] == 401, CHANGE_WITHIN * 2, "the JWT route asks for a token")
    env.plane.kubectl("delete", "authorizer", "-n", env.app_ns, "cognito")
    _eventually(lambda: _get(url)[0] == 500, CHANGE_WITHIN, "the route refuses once its Authorizer is gone")
    status, body = _get(url)
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    assert _get(f"http://127.0.0.1:{port}/dev/files/open.txt")[0] == 200  # the greedy route still serves
    ready = _condition(env.get("api", "-n", env.app_ns, "pets"), "Ready")
    assert ready["status"] == "False" and "cognito" in ready["message"]
