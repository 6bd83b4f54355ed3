"""API keys in the snapshot: keyed hashes only, under a secret the snapshot does not hold."""

from __future__ import annotations

import base64

import yaml

from propylon_compiler import compiler, diagnostics, manifests
from propylon_config import codec, key_hashing

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-from-data-0123456789"
SHORT = "short-key-19-chars!"  # one below the minimum

MANIFESTS = f"""\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: "GET /users"
      apiKeyRequired: true
      integration: {{type: MOCK, mock: {{}}}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: shop}}
spec: {{apiRef: users}}
---
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {{name: basic, namespace: shop}}
spec:
  stages: [{{stageRef: prod}}]
  apiKeySelector: {{matchLabels: {{propylon.dev/usage-plan: basic}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: alice, namespace: shop, labels: {{propylon.dev/usage-plan: basic}}}}
stringData: {{value: "{ALICE}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bob, namespace: shop, labels: {{propylon.dev/usage-plan: basic}}}}
data: {{value: "{base64.b64encode(BOB.encode()).decode()}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: short, namespace: shop, labels: {{propylon.dev/usage-plan: basic}}}}
stringData: {{value: "{SHORT}"}}
"""


def _compile(secret: bytes | None) -> compiler.CompileResult:
    documents = [
        manifests.Document(origin=diagnostics.Origin(file="keys.yaml", document=i + 1), body=body)
        for i, body in enumerate(yaml.safe_load_all(MANIFESTS))
    ]
    return compiler.compile(documents, options=compiler.CompileOptions(api_key_secret=secret))


def test_keys_are_stored_as_hmacs_under_the_given_secret_and_never_in_plain_text() -> None:
    secret = b"an-install-secret-of-32-bytes..."
    result = _compile(secret)
    keys = {key.name: key for key in result.snapshot.api_keys}
    assert sorted(keys) == ["alice", "bob"]  # the short key is never compiled
    assert keys["alice"].digest == key_hashing.digest(secret, ALICE.encode())
    assert keys["bob"].digest == key_hashing.digest(secret, BOB.encode())
    assert result.snapshot.key_hashing is not None
    assert result.snapshot.key_hashing.key_id == key_hashing.key_id(secret)
    text = codec.dumps(result.snapshot)
    for value in (ALICE, BOB, SHORT, base64.b64encode(BOB.encode()).decode()):
        assert value not in text
    assert secret.decode() not in text
    (problem,) = [str(d) for d in result.diagnostics]
    assert problem == (
        "keys.yaml: document 6 (Secret shop/short): stringData.value: an API key must be at least 20 "
        "characters (this one has 19); not accepted"
    )
    assert SHORT not in problem


def test_another_secret_gives_other_digests_and_no_secret_gives_none() -> None:
    one = _compile(b"first-install-secret-0123456789").snapshot
    two = _compile(b"second-install-secret-012345678").snapshot
    assert {k.digest for k in one.api_keys}.isdisjoint({k.digest for k in two.api_keys})
    bare = _compile(None).snapshot
    assert bare.key_hashing is None
    assert [k.digest for k in bare.api_keys] == ["", ""]
