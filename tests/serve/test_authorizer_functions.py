"""REQUEST and TOKEN authorizer functions through `propylon serve`, as a user runs them: the
gateway a subprocess, each authorizer function a real loopback server speaking the Lambda
Runtime Interface Emulator protocol (it records every event it was invoked with), and an echo
backend that shows what reached it.

Two properties a security review found broken:

* The ARN a policy is judged against names the request in the form the route matched and the
  backend receives (DESIGN.md section 8: "the request path minus the basePath, with actual
  values"; "the backend receives exactly the path the route and its checks saw"). Judged on the
  raw percent-encoded path, ``GET /prod/%61dmin`` ran route ``GET /admin`` while a Deny on
  ``*/admin`` never matched it.
* A cached answer is the answer for the Stage and Api it was given for (section 1: "cache key =
  identity source values (+ route for REQUEST)", route ids being ``<ns>/<api>/<stage>/<key>``;
  AWS caches per API stage). One cache per Authorizer, keyed without them, let a 2.0 simple
  ``isAuthorized: true`` given on a dev stage in on prod and on another Api.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import backends
from tests.serve.test_serve import Served

PREFIX = "arn:aws:execute-api:propylon:shop"


def _function(handler: Callable[[dict[str, Any]], Any]) -> backends.Backend:
    """A loopback authorizer function: the RIE protocol's POST carries the event, the body of the
    answer is the handler's return value."""

    def respond(request: backends.Received) -> backends.Answer:
        assert request.path == "/2015-03-31/functions/function/invocations", request.path
        answer = json.dumps(handler(json.loads(request.body))).encode()
        return backends.Answer(body=answer, headers=(("Content-Type", "application/json"),))

    return backends.Backend(respond)


def _events(function: backends.Backend) -> list[dict[str, Any]]:
    return [json.loads(body) for body in function.bodies()]


def _arn(event: dict[str, Any]) -> str:
    return str(event.get("methodArn") or event["routeArn"])


def deny_admin(event: dict[str, Any]) -> dict[str, Any]:
    """A classic policy: everything in the Api, except its admin resources and one secret file."""
    api = _arn(event).split("/", 1)[0]
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": f"{api}/*"},
                {
                    "Effect": "Deny",
                    "Action": "execute-api:Invoke",
                    "Resource": [f"{api}/*/admin", f"{api}/*/admin/*", f"{api}/*/GET/files/secret"],
                },
            ],
        },
    }


def dev_only(event: dict[str, Any]) -> dict[str, Any]:
    """A 2.0 simple response decided on the routeArn: the test token only on Api orders' dev stage."""
    allowed = event["identitySource"] == ["test-token"] and event["routeArn"].startswith(f"{PREFIX}:orders/dev/")
    return {"isAuthorized": allowed}


def stage_named(event: dict[str, Any]) -> dict[str, Any]:
    """A TOKEN policy allowing everything, whose context names the Api and stage it was asked for."""
    api, stage = event["methodArn"].split(":")[-1].split("/")[:2]
    return {
        "principalId": "user-2",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}],
        },
        "context": {"where": f"{api}/{stage}"},
    }


def _manifests(policy: int, simple: int, named: int, echo: str) -> str:
    def authorizer(name: str, kind: str, port: int, settings: str) -> str:
        source = "$request.header.Authorization" if kind == "TOKEN" else "$request.header.X-User"
        return (
            f"apiVersion: propylon.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: {name}, namespace: shop}}\n"
            f'spec:\n  type: {kind}\n  identitySource: ["{source}"]\n'
            f'  function: {{url: "http://127.0.0.1:{port}", {settings}}}\n---\n'
        )

    def proxy(path: str, extra: str = "") -> str:
        return f'{{type: HTTP_PROXY, url: "{echo}{path}"{extra}}}'

    where = ', requestParameters: {"overwrite:header.X-Seen-Where": "$context.authorizer.where"}'
    whoami = f'    - {{routeKey: "GET /whoami", authorizer: named, integration: {proxy("/whoami", where)}}}\n'
    return (
        authorizer("tok", "TOKEN", policy, "resultTtlSeconds: 0")
        + authorizer("req1", "REQUEST", policy, 'payloadFormatVersion: "1.0", resultTtlSeconds: 0')
        + authorizer("req2", "REQUEST", policy, 'payloadFormatVersion: "2.0", resultTtlSeconds: 0')
        + authorizer(
            "gate", "REQUEST", simple, 'payloadFormatVersion: "2.0", enableSimpleResponses: true, resultTtlSeconds: 300'
        )
        + authorizer("named", "TOKEN", named, "resultTtlSeconds: 300")
        + f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: paths, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /admin", authorizer: tok, integration: {proxy("/admin")}}}
    - {{routeKey: "ANY /admin/{{proxy+}}", authorizer: tok, integration: {proxy("/admin/{proxy}")}}}
    - {{routeKey: "GET /pets/{{id}}", authorizer: tok, integration: {proxy("/pets/{id}")}}}
    - {{routeKey: "GET /files/{{proxy+}}", authorizer: tok, integration: {proxy("/files/{proxy}")}}}
    - {{routeKey: "GET /v1/admin", authorizer: req1, integration: {proxy("/v1/admin")}}}
    - {{routeKey: "GET /v2/admin", authorizer: req2, integration: {proxy("/v2/admin")}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: paths, basePath: /prod}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: orders, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /orders", authorizer: gate, integration: {proxy("/orders")}}}
{whoami}---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: billing, namespace: shop}}
spec:
  routes:
    - {{routeKey: "GET /orders", authorizer: gate, integration: {proxy("/billing/orders")}}}
{whoami}---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: shop}}
spec: {{apiRef: orders, basePath: /dev}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: shop}}
spec: {{apiRef: orders, basePath: /live}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: billing, namespace: shop}}
spec: {{apiRef: billing, basePath: /billing}}
"""
    )


class World:
    def __init__(self, served: Served, echo: backends.Backend, functions: dict[str, backends.Backend]) -> None:
        self.served, self.echo, self.functions = served, echo, functions

    def send(self, method: str, target: str, **headers: str) -> tuple[int, str | None, list[str]]:
        """Exactly this request target (no client-side normalisation): the status, the event the
        authorizer function was invoked with for it (its ARN; None: not invoked) and what
        reached the backend."""
        invoked = {name: len(f.received) for name, f in self.functions.items()}
        reached = len(self.echo.received)
        connection = http.client.HTTPConnection("127.0.0.1", self.served.port, timeout=30)
        try:
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        new = [e for name, f in self.functions.items() for e in _events(f)[invoked[name] :]]
        assert len(new) <= 1, new
        return response.status, _arn(new[0]) if new else None, self.echo.lines()[reached:]

    def last_event(self, name: str) -> dict[str, Any]:
        return _events(self.functions[name])[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authorizer-functions")
    echo = backends.Backend(backends.echo_json)
    functions = {"policy": _function(deny_admin), "simple": _function(dev_only), "named": _function(stage_named)}
    served: Served | None = None
    try:
        folder = tmp / "manifests"
        folder.mkdir()
        ports = [functions[name].port for name in ("policy", "simple", "named")]
        (folder / "all.yaml").write_text(_manifests(*ports, echo.url))
        served = Served(folder, tmp)
        yield World(served, echo, functions)
    finally:
        if served is not None:
            served.stop()
        echo.close()
        for function in functions.values():
            function.close()


ADMIN = f"{PREFIX}:paths/prod/GET/admin"


@pytest.mark.parametrize(
    ("method", "target", "arn"),
    [
        ("GET", "/prod/admin", ADMIN),
        ("GET", "/prod/%61dmin", ADMIN),  # one letter encoded: still the admin route, still denied
        ("GET", "/prod/%61%64%6d%69%6e", ADMIN),
        ("GET", "/pr%6Fd/admin", ADMIN),  # an encoded basePath is still the basePath
        ("GET", "/pr%6Fd/%61dmin", ADMIN),
        ("DELETE", "/prod/%61dmin/users/1", f"{PREFIX}:paths/prod/DELETE/admin/users/1"),
        ("GET", "/prod/admin/%75sers", f"{PREFIX}:paths/prod/GET/admin/users"),
        # A greedy value reaches the backend in its raw form; it is judged decoded.
        ("GET", "/prod/files/s%65cret", f"{PREFIX}:paths/prod/GET/files/secret"),
        ("GET", "/prod/v1/%61dmin", f"{PREFIX}:paths/prod/GET/v1/admin"),  # REQUEST 1.0 methodArn
        ("GET", "/pr%6Fd/v2/%61dmin", f"{PREFIX}:paths/prod/GET/v2/admin"),  # REQUEST 2.0 routeArn
    ],
)
def test_a_deny_holds_however_the_path_is_percent_encoded(world: World, method: str, target: str, arn: str) -> None:
    status, judged, reached = world.send(method, target, Authorization="allow", **{"X-User": "alice"})
    assert (status, judged, reached) == (403, arn, [])


@pytest.mark.parametrize(
    ("target", "arn", "upstream"),
    [
        ("/prod/pets/1", f"{PREFIX}:paths/prod/GET/pets/1", "/pets/1"),
        ("/pr%6Fd/pets/%31", f"{PREFIX}:paths/prod/GET/pets/1", "/pets/1"),
        # An encoded "/" is data inside its segment, in the ARN as on the way to the backend.
        ("/prod/pets/a%2Fb", f"{PREFIX}:paths/prod/GET/pets/a%2Fb", "/pets/a%2Fb"),
        ("/prod/pets/%61%2f%62", f"{PREFIX}:paths/prod/GET/pets/a%2Fb", "/pets/a%2Fb"),
        ("/prod/pets/a%20b", f"{PREFIX}:paths/prod/GET/pets/a%20b", "/pets/a%20b"),
        ("/prod/files/a/b", f"{PREFIX}:paths/prod/GET/files/a/b", "/files/a/b"),
    ],
)
def test_the_arn_names_the_path_the_backend_receives(world: World, target: str, arn: str, upstream: str) -> None:
    status, judged, reached = world.send("GET", target, Authorization="allow")
    assert (status, judged, reached) == (200, arn, [f"GET {upstream}"])


def test_a_2_0_event_keeps_the_raw_path_as_sent(world: World) -> None:
    """Only the ARN is canonical: rawPath is the path as the client sent it (section 8)."""
    world.send("GET", "/pr%6Fd/v2/%61dmin", **{"X-User": "alice"})
    event = world.last_event("policy")
    assert (event["rawPath"], event["routeArn"]) == ("/pr%6Fd/v2/%61dmin", f"{PREFIX}:paths/prod/GET/v2/admin")


def test_a_cached_simple_answer_stays_on_the_stage_and_api_it_was_given_for(world: World) -> None:
    def orders(target: str) -> tuple[int, str | None, list[str]]:
        return world.send("GET", target, **{"X-User": "test-token"})

    assert orders("/dev/orders") == (200, f"{PREFIX}:orders/dev/GET/orders", ["GET /orders"])
    assert orders("/dev/orders") == (200, None, ["GET /orders"])  # cached
    # Another stage of the Api, and another Api with the same route key: each asks the function.
    assert orders("/live/orders") == (403, f"{PREFIX}:orders/live/GET/orders", [])
    assert orders("/billing/orders") == (403, f"{PREFIX}:billing/billing/GET/orders", [])
    # And their answers are cached for them, not for dev.
    assert orders("/live/orders") == (403, None, [])
    assert orders("/billing/orders") == (403, None, [])
    assert orders("/dev/orders") == (200, None, ["GET /orders"])


def _where(world: World, target: str, token: str) -> tuple[int, bool, str]:
    status, judged, reached = world.send("GET", target, Authorization=token)
    assert reached == ["GET /whoami"], reached
    return status, judged is not None, world.echo.received[-1].header("X-Seen-Where")


def test_a_cached_token_answer_is_kept_per_stage(world: World) -> None:
    """A TOKEN answer's context (and principal) is the one given for this Stage's methodArn."""
    assert _where(world, "/dev/whoami", "token-1") == (200, True, "orders/dev")
    assert _where(world, "/dev/whoami", "token-1") == (200, False, "orders/dev")  # cached on dev
    assert _where(world, "/live/whoami", "token-1") == (200, True, "orders/live")
    assert _where(world, "/billing/whoami", "token-1") == (200, True, "billing/billing")
    assert _where(world, "/live/whoami", "token-1") == (200, False, "orders/live")
