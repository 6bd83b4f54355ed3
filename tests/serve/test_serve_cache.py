"""The response cache through `propylon serve`, against a loopback backend that counts calls."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import backends
from tests.serve.test_serve import Served, _wait_for

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: demo}}
spec:
  routes:
    - routeKey: GET /items
      integration: {{type: HTTP_PROXY, url: "{backend}/items"}}
    - routeKey: GET /paged
      cacheKeyParameters: [querystring.page]
      integration: {{type: HTTP_PROXY, url: "{backend}/paged"}}
    - routeKey: POST /items
      integration: {{type: HTTP_PROXY, url: "{backend}/items"}}
    - routeKey: GET /cookie
      integration: {{type: HTTP_PROXY, url: "{backend}/cookie"}}
    - routeKey: GET /nostore
      integration: {{type: HTTP_PROXY, url: "{backend}/nostore"}}
    - routeKey: GET /private
      integration: {{type: HTTP_PROXY, url: "{backend}/private"}}
    - routeKey: GET /varystar
      integration: {{type: HTTP_PROXY, url: "{backend}/varystar"}}
    - routeKey: GET /vary
      integration: {{type: HTTP_PROXY, url: "{backend}/vary"}}
    - routeKey: GET /big
      integration: {{type: HTTP_PROXY, url: "{backend}/big"}}
    - routeKey: GET /error
      integration: {{type: HTTP_PROXY, url: "{backend}/error"}}
    - routeKey: GET /slow
      integration: {{type: HTTP_PROXY, url: "{backend}/slow"}}
    - routeKey: GET /checked
      requestValidation: {{requiredParameters: [querystring.id]}}
      integration: {{type: HTTP_PROXY, url: "{backend}/checked"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: demo}}
spec:
  apiRef: shop
  basePath: /live
  cache: {{enabled: true, ttlSeconds: 300, capacityMiB: 8, requireAuthorizationForCacheControl: false}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: strict, namespace: demo}}
spec:
  apiRef: shop
  basePath: /strict
  cache: {{enabled: true, unauthorizedCacheControlHeaderStrategy: {strategy}}}
"""


class Backend(backends.Backend):
    """Counts every call by path and query; answers per path with what the case needs."""

    EXTRA = {
        "/cookie": (("Set-Cookie", "s=1"),),
        "/nostore": (("Cache-Control", "no-store"),),
        "/private": (("Cache-Control", "private, max-age=60"),),
        "/varystar": (("Vary", "*"),),
        "/vary": (("Vary", "Accept-Language"),),
    }

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()
        super().__init__(self._answer)

    def _answer(self, request: backends.Received) -> backends.Answer:
        path = request.path.split("?")[0]
        with self.lock:
            self.calls[request.path] += 1
            n = self.calls[request.path]
        if path == "/slow":
            self.release.wait(20)
        body = f"{request.path} #{n} lang={request.header('Accept-Language') or None}".encode()
        if path == "/big":
            body = body + b"x" * (1024 * 1024 + 10)
        return backends.Answer(status=500 if path == "/error" else 200, body=body, headers=self.EXTRA.get(path, ()))


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _serve(tmp: Path, backend: Backend, strategy: str = "FAIL_WITH_403") -> Served:
    folder = tmp / "manifests"
    folder.mkdir(exist_ok=True)
    (folder / "all.yaml").write_text(MANIFESTS.format(backend=backend.url, strategy=strategy))
    return Served(folder, tmp)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Served]:
    gateway = _serve(tmp_path_factory.mktemp("cache"), backend)
    yield gateway
    gateway.stop()


def _call(
    served: Served, path: str, method: str = "GET", data: bytes | None = None, **headers: str
) -> tuple[int, str | None, bytes, dict[str, str]]:
    request = urllib.request.Request(served.url(path), method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("x-propylon-cache"), response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-propylon-cache"), error.read(), dict(error.headers)


def test_a_second_get_is_a_hit_that_never_reaches_the_backend(served: Served, backend: Backend) -> None:
    status, first, body, _ = _call(served, "/live/items?a=1")
    assert (status, first) == (200, "miss")
    status, second, again, _ = _call(served, "/live/items?a=1")
    assert (status, second, again) == (200, "hit", body)
    assert backend.calls["/items?a=1"] == 1


def test_the_whole_query_is_in_the_key_unless_cache_key_parameters_narrow_it(served: Served, backend: Backend) -> None:
    assert _call(served, "/live/items?q=x")[1] == "miss"
    assert _call(served, "/live/items?q=y")[1] == "miss"
    assert _call(served, "/live/paged?page=1&utm=a")[1] == "miss"
    assert _call(served, "/live/paged?page=1&utm=b")[1] == "hit"
    assert _call(served, "/live/paged?page=2&utm=a")[1] == "miss"


def test_post_is_not_cached(served: Served, backend: Backend) -> None:
    for _ in range(2):  # not cache-enabled (only GET by default): no x-propylon-cache at all
        assert _call(served, "/live/items?p=1", "POST", b"{}")[1] is None
    assert backend.calls["/items?p=1"] == 2


@pytest.mark.parametrize("path", ["/cookie", "/nostore", "/private", "/varystar", "/big", "/error"])
def test_uncacheable_responses_are_never_stored(served: Served, backend: Backend, path: str) -> None:
    for _ in range(2):
        assert _call(served, f"/live{path}")[1] == "bypass"
    assert backend.calls[path] == 2


def test_a_large_body_still_reaches_the_client_whole(served: Served) -> None:
    status, _, body, _ = _call(served, "/live/big?whole=1")
    assert status == 200 and len(body) > 1024 * 1024 + 10


def test_authorization_on_a_route_without_an_authorizer_bypasses(served: Served, backend: Backend) -> None:
    for _ in range(2):
        assert _call(served, "/live/items?auth=1", Authorization="Bearer x")[1] == "bypass"
    assert backend.calls["/items?auth=1"] == 2


def test_a_vary_header_is_keyed_and_an_unkeyed_header_cannot_poison(served: Served, backend: Backend) -> None:
    _, _, english, _ = _call(served, "/live/vary", **{"Accept-Language": "en"})
    _, hit, french, _ = _call(served, "/live/vary", **{"Accept-Language": "fr"})
    assert hit == "miss" and b"lang=fr" in french and b"lang=en" in english
    # An unkeyed header (X-Forwarded-Host) does not change the key: the stored reply is served
    # as it was, and the attacker's header never reaches a stored entry another client gets.
    _call(served, "/live/items?poison=1", **{"X-Forwarded-Host": "evil.example"})
    _, state, body, _ = _call(served, "/live/items?poison=1")
    assert state == "hit" and b"evil" not in body


def test_the_host_is_keyed_without_its_port_or_case(served: Served, backend: Backend) -> None:
    # DESIGN.md section 8: the key holds the Host lowercased, port dropped.
    port = served.url("/").split("/")[2].rpartition(":")[2]
    assert _call(served, "/live/items?h=1", Host="localhost:" + port)[1] == "miss"
    assert _call(served, "/live/items?h=1", Host="LOCALHOST:1")[1] == "hit"
    assert _call(served, "/live/items?h=1", Host="localhost")[1] == "hit"
    assert _call(served, "/live/items?h=1", Host="127.0.0.1:" + port)[1] == "miss"  # another name
    assert backend.calls["/items?h=1"] == 2


def test_a_path_suffix_is_another_key_and_another_route(served: Served) -> None:
    _call(served, "/live/items?d=1")
    status, _, _, _ = _call(served, "/live/items/x.css?d=1")
    assert status in (403, 404)  # no route: nothing of /items is ever served for it
    assert _call(served, "/live/items.css?d=1")[0] in (403, 404)


def test_refresh_with_max_age_0_when_allowed(served: Served, backend: Backend) -> None:
    _call(served, "/live/items?r=1")
    # DESIGN.md §8: a refreshed response is "bypass", though it is stored for the next caller.
    assert _call(served, "/live/items?r=1", **{"Cache-Control": "max-age=0"})[1] == "bypass"
    assert backend.calls["/items?r=1"] == 2
    _, state, body, _ = _call(served, "/live/items?r=1")
    assert state == "hit" and b"#2" in body


def test_refresh_refused_with_403(served: Served, backend: Backend) -> None:
    _call(served, "/strict/items?r=2")
    status, state, body, headers = _call(served, "/strict/items?r=2", **{"Cache-Control": "max-age=0"})
    assert (status, state) == (403, "bypass")
    # DESIGN.md §8: FAIL_WITH_403 answers ACCESS_DENIED, with its section-3 body.
    assert headers["x-propylon-error-type"] == "ACCESS_DENIED" and json.loads(body) == {"message": "Forbidden"}
    assert backend.calls["/items?r=2"] == 1


def test_refusals_before_the_lookup_say_bypass_and_count(served: Served, backend: Backend) -> None:
    # DESIGN.md §8: every response of a cache-enabled route carries x-propylon-cache, refusals
    # of the steps before the lookup (here request validation's 400) too.
    status, state, _, headers = _call(served, "/live/checked")
    assert (status, state) == (400, "bypass")
    assert headers["x-propylon-error-type"] == "BAD_REQUEST_PARAMETERS"
    assert backend.calls["/checked"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{served.admin}/metrics", timeout=5) as response:
        scraped = response.read().decode()
    counted = [
        line
        for line in scraped.splitlines()
        if line.startswith("propylon_cache_total{") and 'route="GET /checked"' in line and 'result="bypass"' in line
    ]
    assert counted and counted[0].endswith(" 1.0"), counted


@pytest.mark.parametrize(
    ("strategy", "header"),
    [("SUCCEED_WITH_RESPONSE_HEADER", "denied"), ("SUCCEED_WITHOUT_RESPONSE_HEADER", None)],
)
def test_refresh_denied_serves_the_cached_reply(
    tmp_path: Path, backend: Backend, strategy: str, header: str | None
) -> None:
    gateway = _serve(tmp_path, backend, strategy)
    try:
        path = f"/strict/items?s={strategy}"
        _call(gateway, path)
        status, state, _, headers = _call(gateway, path, **{"Cache-Control": "max-age=0"})
        assert (status, state) == (200, "hit")
        assert headers.get("x-propylon-cache-invalidation") == header
        assert backend.calls[f"/items?s={strategy}"] == 1
    finally:
        gateway.stop()


def test_concurrent_misses_make_one_backend_call(served: Served, backend: Backend) -> None:
    backend.release.clear()
    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        futures = [pool.submit(_call, served, "/live/slow") for _ in range(100)]
        while backend.calls["/slow"] == 0:
            threading.Event().wait(0.01)
        threading.Event().wait(0.5)  # let the other 99 arrive and wait on the leader
        backend.release.set()
        results = [f.result() for f in futures]
    assert backend.calls["/slow"] == 1
    assert {r[0] for r in results} == {200}
    assert sorted(r[1] for r in results).count("miss") == 1


def _admin_flush(served: Served, stage: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.admin}/admin/stages/{stage}/cache/flush", method="POST", data=b""
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_admin_api_flushes_one_stage(served: Served, backend: Backend) -> None:
    _call(served, "/live/items?f=1")
    assert _call(served, "/live/items?f=1")[1] == "hit"
    assert _admin_flush(served, "demo/live") == 200
    assert _call(served, "/live/items?f=1")[1] == "miss"
    assert backend.calls["/items?f=1"] == 2
    assert _admin_flush(served, "demo/absent") == 404


def test_a_new_flush_annotation_flushes_under_watch(tmp_path: Path, backend: Backend) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    text = MANIFESTS.format(backend=backend.url, strategy="FAIL_WITH_403")
    (folder / "all.yaml").write_text(text)
    gateway = Served(folder, tmp_path, "--watch")
    try:
        _call(gateway, "/live/items?w=1")
        assert _call(gateway, "/live/items?w=1")[1] == "hit"
        annotated = text.replace(
            "metadata: {name: live, namespace: demo}",
            "metadata: {name: live, namespace: demo, annotations: {propylon.dev/flush-cache: '1'}}",
        )
        assert annotated != text
        (folder / "all.yaml").write_text(annotated)
        assert _wait_for(lambda: _call(gateway, "/live/items?w=1")[1] == "miss", 20)
        assert _call(gateway, "/live/items?w=1")[1] == "hit"  # the same value again flushes nothing
    finally:
        gateway.stop()


USERS = """\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: idp, namespace: demo}}
spec:
  jwt: {{issuer: "{issuer}", audience: [my-client], jwksUri: "{issuer}/jwks.json"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: demo}}
spec:
  routes:
    - routeKey: GET /me
      authorizer: idp
      integration:
        type: HTTP_PROXY
        url: "{backend}/me"
        requestParameters: {{"overwrite:header.Accept-Language": "$context.authorizer.principalId"}}
    - routeKey: GET /by-email
      authorizer: idp
      integration:
        type: HTTP_PROXY
        url: "{backend}/by-email"
        requestParameters: {{"overwrite:header.Accept-Language": "$context.authorizer.claims.email"}}
    - routeKey: GET /simple
      authorizer: simple
      integration:
        type: HTTP_PROXY
        url: "{backend}/simple"
        requestParameters: {{"overwrite:header.Accept-Language": "$context.authorizer.user"}}
    - routeKey: GET /everyone-is-user
      authorizer: policy
      integration:
        type: HTTP_PROXY
        url: "{backend}/everyone-is-user"
        requestParameters: {{"overwrite:header.Accept-Language": "$context.authorizer.user"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: simple, namespace: demo}}
spec:
  type: REQUEST
  identitySource: ["$request.header.X-Caller"]
  function: {{url: "{function}", payloadFormatVersion: "2.0", enableSimpleResponses: true}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: policy, namespace: demo}}
spec:
  type: TOKEN
  identitySource: ["$request.header.X-Caller"]
  function: {{url: "{function}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: users, namespace: demo}}
spec:
  apiRef: users
  cache: {{enabled: true}}
"""


def test_each_principal_has_its_own_entries(tmp_path: Path, backend: Backend) -> None:
    from tests import issuers

    issuer = issuers.Issuer()
    gateway = None
    try:
        kid = issuer.add_key("RSA")
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(USERS.format(issuer=issuer.issuer, backend=backend.url, function=_NOBODY))
        gateway = Served(folder, tmp_path)
        ada = issuer.token(kid, claims=issuer.claims(sub="ada"))
        bob = issuer.token(kid, claims=issuer.claims(sub="bob"))
        _, first, ada_body, _ = _call(gateway, "/users/me", Authorization="Bearer " + ada)
        _, second, bob_body, _ = _call(gateway, "/users/me", Authorization="Bearer " + bob)
        assert (first, second) == ("miss", "miss")
        assert b"lang=ada" in ada_body and b"lang=bob" in bob_body
        _, again, body, _ = _call(gateway, "/users/me", Authorization="Bearer " + bob)
        assert (again, body) == ("hit", bob_body)
        assert _call(gateway, "/users/me")[0] == 401  # no token: never a cached answer
    finally:
        if gateway is not None:
            gateway.stop()
        issuer.stop()


_NOBODY = "http://127.0.0.1:9"  # the routes that need no authorizer function never call it


def _authorizer_function(request: backends.Received) -> backends.Answer:
    """Every caller allowed, named only in the context: a 2.0 simple answer, or a TOKEN policy
    whose principalId is "user" for everyone (as AWS's blueprint writes it)."""
    event = json.loads(request.body)
    caller = event.get("authorizationToken") or event["identitySource"][0]
    if event.get("type") == "TOKEN":
        arn = event["methodArn"]
        statement = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn}
        answer = {"principalId": "user", "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}
    else:
        answer = {"isAuthorized": True}
    answer["context"] = {"user": caller}
    return backends.Answer(body=json.dumps(answer).encode(), headers=(("Content-Type", "application/json"),))


def test_callers_without_a_principal_of_their_own_never_share_an_entry(tmp_path: Path, backend: Backend) -> None:
    # DESIGN.md section 4: never one user's data to another, when the authorizer names no
    # principal (a JWT without sub, a 2.0 simple answer) or names everyone the same.
    from tests import issuers

    issuer = issuers.Issuer()
    function = backends.Backend(_authorizer_function)
    gateway = None
    try:
        kid = issuer.add_key("RSA")
        folder = tmp_path / "manifests"
        folder.mkdir()
        manifests = USERS.format(issuer=issuer.issuer, backend=backend.url, function=function.url)
        (folder / "all.yaml").write_text(manifests)
        gateway = Served(folder, tmp_path)
        ada = {"Authorization": "Bearer " + issuer.token(kid, claims=issuer.claims(sub=None, email="ada@x"))}
        bob = {"Authorization": "Bearer " + issuer.token(kid, claims=issuer.claims(sub=None, email="bob@x"))}
        callers = {
            "/users/by-email": (ada, bob, "ada@x", "bob@x"),
            "/users/simple": ({"X-Caller": "ada"}, {"X-Caller": "bob"}, "ada", "bob"),
            "/users/everyone-is-user": ({"X-Caller": "ada"}, {"X-Caller": "bob"}, "ada", "bob"),
        }
        for path, (first, second, first_name, second_name) in callers.items():
            _, one, first_body, _ = _call(gateway, path, **first)
            _, two, second_body, _ = _call(gateway, path, **second)
            assert (one, two) == ("miss", "miss"), path
            assert f"lang={first_name}".encode() in first_body, path
            assert f"lang={second_name}".encode() in second_body, path
            _, again, body, _ = _call(gateway, path, **second)
            assert (again, body) == ("hit", second_body), path  # the same caller still hits
    finally:
        if gateway is not None:
            gateway.stop()
        function.close()
        issuer.stop()
