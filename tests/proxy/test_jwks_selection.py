"""KeySet.ready and its remembered key selections: a cold token's keys without a scan, and
never a key the current set no longer has (issue 15's cold-JWT path)."""

from __future__ import annotations

import math
import time

from cryptography.hazmat.primitives.asymmetric import rsa

from propylon_proxy.authorizers import jwks


def _key(kid: str) -> jwks.Key:
    return jwks.Key(kid=kid, kty="RSA", alg="RS256", key=rsa.generate_private_key(65537, 2048).public_key())


def _fetched(*keys: jwks.Key) -> jwks.KeySet:
    keyset = jwks.KeySet(issuer="https://issuer.test", jwks_uri="http://127.0.0.1:9/jwks.json", clock=time.time)
    keyset._keys, keyset._expires_at = keys, math.inf  # as a fetch leaves them
    return keyset


def test_ready_answers_a_known_kid_and_leaves_the_rest_to_keys_for() -> None:
    a, b = _key("a"), _key("b")
    keyset = _fetched(a, b)
    assert keyset.ready("a", "RS256") == (a,)
    assert keyset.ready("a", "RS256") == (a,)  # remembered
    assert keyset.ready(None, "RS256") == (a, b)
    assert keyset.ready("a", "ES256") is None  # no fit for that kid: keys_for (which may refetch)
    assert keyset.ready("unknown", "RS256") is None  # may need a refetch: keys_for decides
    assert jwks.KeySet(issuer="https://issuer.test", jwks_uri=None, clock=time.time).ready("a", "RS256") is None


def test_a_new_key_set_forgets_the_old_selections() -> None:
    old, new = _key("a"), _key("a")  # a rotated key under the same kid
    keyset = _fetched(old)
    assert keyset.ready("a", "RS256") == (old,)
    keyset._keys = (new,)  # what the next fetch that changed the keys leaves
    assert keyset.ready("a", "RS256") == (new,)


def test_selections_are_bounded() -> None:
    keyset = _fetched(_key("a"))
    for i in range(jwks._SELECTIONS * 2):
        assert keyset.ready(f"kid-{i}", "RS256") is None
    assert len(keyset._selected) <= jwks._SELECTIONS
    assert keyset.ready("a", "RS256") is not None
