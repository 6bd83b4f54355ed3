"""A real token issuer for tests: keys generated here, a JWKS and an OIDC discovery document
served over HTTP on loopback, and tokens signed with pyjwt.

The server runs in a thread (so an in-process gateway's event loop and a `propylon serve`
subprocess can both reach it), counts every JWKS fetch, and can be switched to answer 503
(``down``) or to stall without answering (``stall``), to test outages and timeouts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import algorithms

DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


def _private_key(kind: str) -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "OKP":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def _public_jwk(kind: str, key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if kind == "RSA":
        jwk = algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif kind == "EC":
        jwk = algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Issuer:
    """An OIDC-ish issuer at ``url``: ``/.well-known/openid-configuration`` and ``/jwks.json``."""

    def __init__(self, *, issuer: str | None = None) -> None:
        self.keys: dict[str, tuple[str, Any]] = {}  # kid -> (kind, private key)
        self.published: list[str] = []
        self.mode = "up"  # "up" | "down" | "stall"
        self.cache_control: str | None = None
        self.fetches = 0
        self.discoveries = 0
        self.extra_paths: dict[str, dict[str, Any]] = {}  # more JSON documents to serve (an attacker's JWKS)
        self._release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                if owner.mode == "stall":
                    owner._release.wait(30)
                    return
                if owner.mode == "down":
                    self._send(503, {"message": "down"})
                    return
                if path == "/.well-known/openid-configuration":
                    owner.discoveries += 1
                    self._send(200, {"issuer": owner.issuer, "jwks_uri": owner.url + "/jwks.json"})
                elif path == "/jwks.json":
                    owner.fetches += 1
                    self._send(200, owner.jwks(), cache_control=owner.cache_control)
                elif path in owner.extra_paths:
                    self._send(200, owner.extra_paths[path])
                else:
                    self._send(404, {"message": "no"})

            def _send(self, status: int, document: Any, cache_control: str | None = None) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cache_control:
                    self.send_header("Cache-Control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = issuer or self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # --- keys ------------------------------------------------------------------------------

    def add_key(self, kind: str = "RSA", kid: str | None = None, *, publish: bool = True) -> str:
        kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = (kind, _private_key(kind))
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public_jwk(self.keys[kid][0], self.keys[kid][1], kid) for kid in self.published]}

    def public_pem(self, kid: str) -> bytes:
        return self.keys[kid][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # --- tokens ----------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "my-client",
            "sub": "user-42",
            "email": "ada@example.com",
            "scope": "users/read profile",
            "iat": now,
            "exp": now + 3600,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def token(
        self,
        kid: str,
        *,
        alg: str | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        header_kid: str | bool | None = True,
    ) -> str:
        kind, key = self.keys[kid]
        extra = dict(headers or {})
        if header_kid is True:
            extra["kid"] = kid
        elif isinstance(header_kid, str):
            extra["kid"] = header_kid
        payload = claims if claims is not None else self.claims()
        return jwt.encode(payload, key, algorithm=alg or DEFAULT_ALG[kind], headers=extra)


def hs_token(
    secret: bytes, claims: dict[str, Any], *, alg: str = "HS256", headers: dict[str, Any] | None = None
) -> str:
    """An HS* token built by hand, so a test can also sign with material pyjwt would refuse as an
    HMAC secret (a public key PEM: the key-confusion attack)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "typ": "JWT", **(headers or {})}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def none_token(claims: dict[str, Any], *, kid: str | None = None) -> str:
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
