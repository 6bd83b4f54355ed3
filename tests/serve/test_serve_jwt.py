"""JWT Authorizers through `propylon serve`, as a user runs it: a real issuer on loopback (keys
generated here, a JWKS and an OIDC discovery document over HTTP), real tokens, a real backend
that shows what it received. Expiry uses tokens minted in the past (nothing sleeps); the
clock-driven rules (refetch limit, max-age, outages) are in tests/proxy/test_jwt.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests import backends, issuers
from tests.serve.test_serve import Served, _wait_for

HS_SECRET = "an-hs256-shared-secret-of-32-byte"

MANIFESTS = """\
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: idp, namespace: shop}}
spec:
  jwt:
    issuer: {issuer}
    audience: [my-client, other-client]
    jwksUri: {issuer}/jwks.json
    algorithms: [RS256, ES256, EdDSA]
    clockSkewSeconds: 30
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: discovered, namespace: shop}}
spec:
  jwt: {{issuer: "{issuer}", audience: [my-client]}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: shared, namespace: shop}}
spec:
  jwt:
    issuer: internal
    algorithms: [HS256]
    secretRef: {{name: jwt-secret, key: secret}}
---
apiVersion: v1
kind: Secret
metadata: {{name: jwt-secret, namespace: shop}}
stringData: {{secret: "{secret}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {{name: fn, namespace: shop}}
spec:
  type: REQUEST
  function: {{url: "http://127.0.0.1:9"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: GET /me
      authorizer: idp
      integration:
        type: HTTP_PROXY
        url: {backend}/me
        requestParameters:
          "overwrite:header.X-User-Id": "$context.authorizer.claims.sub"
          "overwrite:header.X-Email": "$context.authorizer.claims.email"
          "overwrite:header.X-Principal": "$context.authorizer.principalId"
    - routeKey: GET /admin
      authorizer: idp
      authorizationScopes: [admin, users/write]
      integration: {{type: HTTP_PROXY, url: "{backend}/admin"}}
    - routeKey: GET /reports
      authorizer: discovered
      integration: {{type: HTTP_PROXY, url: "{backend}/reports"}}
    - routeKey: GET /internal
      authorizer: shared
      integration:
        type: HTTP_PROXY
        url: {backend}/internal
        requestParameters: {{"overwrite:header.X-User-Id": "$context.authorizer.claims.sub"}}
    - routeKey: GET /groups
      authorizer: shared
      integration:
        type: HTTP
        url: {backend}/groups
        requestTemplates:
          application/json: "#set($ok = $context.authorizer.claims.groups.add('root'))$context.authorizer.claims.groups"
    - routeKey: GET /fn
      authorizer: fn
      integration: {{type: HTTP_PROXY, url: "{backend}/fn"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec:
  apiRef: users
  accessLog: {{enabled: true}}
"""


class World:
    def __init__(self, issuer: issuers.Issuer, backend: backends.Backend) -> None:
        self.issuer, self.backend = issuer, backend
        self.rsa = issuer.add_key("RSA")
        self.ec = issuer.add_key("EC")
        self.okp = issuer.add_key("OKP")
        self.served: Served

    def get(self, path: str, token: str | None, *, scheme: str = "Bearer ") -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(self.served.url("/prod" + path))
        if token is not None:
            request.add_header("Authorization", scheme + token)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("jwt")
    issuer = issuers.Issuer()
    backend = backends.Backend(backends.echo_json)
    folder = tmp / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(MANIFESTS.format(issuer=issuer.issuer, backend=backend.url, secret=HS_SECRET))
    served = None
    try:
        world = World(issuer, backend)
        world.served = served = Served(folder, tmp)
        yield world
    finally:
        if served is not None:
            served.stop()
        backend.close()
        issuer.stop()


def _refused(world: World, path: str, token: str | None, status: int = 401, **kw: Any) -> None:
    before = len(world.backend.received)
    got, headers, body = world.get(path, token, **kw)
    expected = {
        401: ("UNAUTHORIZED", {"message": "Unauthorized"}),
        403: ("ACCESS_DENIED", {"message": "Forbidden"}),
        500: ("AUTHORIZER_CONFIGURATION_ERROR", {"message": "Internal Server Error"}),
    }[status]
    assert (got, headers.get("x-propylon-error-type"), body) == (status, *expected)
    assert headers.get("x-request-id")
    if status == 401:
        assert headers.get("WWW-Authenticate") == "Bearer"
    assert len(world.backend.received) == before, "a refused request reached the backend"


@pytest.mark.parametrize("kind", ["rsa", "ec", "okp"])
def test_valid_tokens_pass_and_their_claims_reach_the_backend(world: World, kind: str) -> None:
    token = world.issuer.token(getattr(world, kind), claims=world.issuer.claims(sub=f"user-{kind}"))
    status, _, body = world.get("/me", token)
    assert status == 200
    assert body["headers"]["X-User-Id"] == f"user-{kind}"
    assert body["headers"]["X-Principal"] == f"user-{kind}"
    assert body["headers"]["X-Email"] == "ada@example.com"
    # The access log names the principal.
    assert _wait_for(lambda: f'"principalId":"user-{kind}"' in world.served.stdout_path.read_text(), 5)


def test_a_rotated_key_is_accepted_without_a_restart(world: World) -> None:
    # Runs before any test sends an unknown kid: real time cannot be moved here, and an unknown
    # kid refetches only once per 30 s (the clock-driven version is in tests/proxy/test_jwt.py).
    fetches = world.issuer.fetches
    rotated = world.issuer.add_key("EC")
    status, _, body = world.get("/me", world.issuer.token(rotated, claims=world.issuer.claims(sub="rotated")))
    assert status == 200 and body["headers"]["X-User-Id"] == "rotated"
    assert world.issuer.fetches >= fetches + 1


def test_client_id_stands_in_for_a_missing_aud(world: World) -> None:
    token = world.issuer.token(world.ec, claims=world.issuer.claims(aud=None, client_id="other-client"))
    assert world.get("/me", token)[0] == 200
    wrong = world.issuer.token(world.ec, claims=world.issuer.claims(aud=None, client_id="stranger"))
    _refused(world, "/me", wrong)


def test_an_audience_list_needs_one_match(world: World) -> None:
    assert world.get("/me", world.issuer.token(world.rsa, claims=world.issuer.claims(aud=["x", "my-client"])))[0] == 200


def _cases(world: World) -> dict[str, str | None]:
    i, now = world.issuer, int(time.time())
    claims = i.claims()
    stranger = issuers.Issuer()  # keys nobody published to the gateway's issuer
    try:
        intruder = stranger.add_key("RSA")
        forged = stranger.token(intruder, claims=claims, header_kid=world.rsa)  # a known kid, the wrong key
        # The attacker's own JWKS, advertised in the token's headers: never read.
        world.issuer.extra_paths["/attacker.json"] = stranger.jwks()
        jku = stranger.token(intruder, claims=claims, headers={"jku": i.url + "/attacker.json"})
        jwk_header = stranger.token(intruder, claims=claims, headers={"jwk": stranger.jwks()["keys"][0]})
    finally:
        stranger.stop()
    good = i.token(world.rsa)
    head, _payload, signature = good.split(".")
    tampered_payload = jwt.utils.base64url_encode(json.dumps({**claims, "sub": "admin"}).encode()).decode()
    return {
        "expired": i.token(world.rsa, claims=i.claims(iat=now - 7200, exp=now - 3600)),
        "not yet valid": i.token(world.ec, claims=i.claims(nbf=now + 3600)),
        "no exp": i.token(world.ec, claims=i.claims(exp=None)),
        "wrong issuer": i.token(world.rsa, claims=i.claims(iss="https://evil.example")),
        "wrong audience": i.token(world.okp, claims=i.claims(aud="someone-else")),
        "bad signature": forged,
        "tampered payload": f"{head}.{tampered_payload}.{signature}",
        "unknown kid": i.token(world.rsa, header_kid="no-such-kid"),
        "alg none with kid": issuers.none_token(claims, kid=world.rsa),
        "alg none without kid": issuers.none_token(claims),
        "HS256 with the RSA public key as secret": issuers.hs_token(
            i.public_pem(world.rsa), claims, headers={"kid": world.rsa}
        ),
        "RS384 not in the algorithms": i.token(world.rsa, alg="RS384"),
        "unknown crit": i.token(world.ec, headers={"crit": ["exp-ext"], "exp-ext": 1}),
        "jku header": jku,
        "jwk header": jwk_header,
        "garbage": "not.a.token",
        "empty": "",
        "missing": None,
    }


def test_every_bad_token_is_a_401_that_never_reaches_the_backend(world: World) -> None:
    cases = _cases(world)
    for name, token in cases.items():
        try:
            _refused(world, "/me", token)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_a_token_without_the_bearer_prefix_is_accepted(world: World) -> None:
    assert world.get("/me", world.issuer.token(world.rsa), scheme="")[0] == 200


def test_scopes_must_contain_one_of_the_routes_authorization_scopes(world: World) -> None:
    i = world.issuer
    _refused(world, "/admin", i.token(world.rsa), status=403)  # "users/read profile"
    assert world.get("/admin", i.token(world.rsa, claims=i.claims(scope="profile users/write")))[0] == 200
    assert world.get("/admin", i.token(world.ec, claims=i.claims(scope=None, scp=["admin"])))[0] == 200
    _refused(world, "/admin", i.token(world.ec, claims=i.claims(scope=None, scp=["read"])), status=403)
    _refused(world, "/admin", i.token(world.ec, claims=i.claims(scope=None)), status=403)


def test_oversize_tokens_never_reach_the_backend(world: World) -> None:
    # A token over 16 KiB cannot fit the 16 KiB header block: the listener refuses it (431)
    # before the authorizer would (its own 16 KiB check is in tests/proxy/test_jwt_units.py).
    big = world.issuer.token(world.rsa, claims=world.issuer.claims(pad="x" * 17000))
    before = len(world.backend.received)
    status, headers, _ = world.get("/me", big)
    assert (status, headers.get("x-propylon-error-type")) == (431, "REQUEST_HEADERS_TOO_LARGE")
    assert len(world.backend.received) == before


def test_keys_are_discovered_from_the_issuers_openid_configuration(world: World) -> None:
    status, _, body = world.get("/reports", world.issuer.token(world.okp))
    assert status == 200 and body["path"] == "/reports"
    assert world.issuer.discoveries >= 1


def test_hs256_with_a_secret_ref_works_and_other_secrets_do_not(world: World) -> None:
    now = int(time.time())
    claims = {"iss": "internal", "sub": "svc-a", "exp": now + 600}
    status, _, body = world.get("/internal", issuers.hs_token(HS_SECRET.encode(), claims))
    assert status == 200 and body["headers"]["X-User-Id"] == "svc-a"
    _refused(world, "/internal", issuers.hs_token(b"another-secret-entirely-32-bytes!", claims))
    _refused(world, "/internal", world.issuer.token(world.rsa, claims={**claims}))  # RS256 on an HS-only Authorizer
    _refused(world, "/me", issuers.hs_token(HS_SECRET.encode(), {**world.issuer.claims()}))  # HS256 on RS: never


def test_a_template_cannot_change_the_claims_a_later_request_sees(world: World) -> None:
    # The second request reuses the verified token (a warm cache hit): a template that changes
    # the claims it reads must change only its own request's copy.
    claims = {"iss": "internal", "sub": "svc-b", "groups": ["staff"], "exp": int(time.time()) + 600}
    token = issuers.hs_token(HS_SECRET.encode(), claims)
    sent = []
    for _ in range(2):
        assert world.get("/groups", token)[0] == 200
        sent.append(world.backend.received[-1].body)
    assert sent == [b"[staff, root]", b"[staff, root]"]


def test_a_request_authorizer_whose_function_is_down_fails_closed(world: World) -> None:
    before = len(world.backend.received)
    status, headers, body = world.get("/fn", world.issuer.token(world.rsa))
    assert (status, headers.get("x-propylon-error-type")) == (500, "AUTHORIZER_FAILURE")
    assert body == {"message": "Internal Server Error"}
    assert len(world.backend.received) == before


def test_no_token_or_secret_is_written_to_the_logs(world: World) -> None:
    token = world.issuer.token(world.rsa)
    assert world.get("/me", token)[0] == 200
    out = world.served.stdout_path.read_text() + world.served.stderr()
    assert token not in out and token.split(".")[2] not in out
    assert HS_SECRET not in out


def test_render_prints_no_secret(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "all.yaml").write_text(
        MANIFESTS.format(issuer=world.issuer.issuer, backend=world.backend.url, secret=HS_SECRET)
    )
    command = [sys.executable, "-m", "propylon", "render", "-f", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert HS_SECRET not in done.stdout
