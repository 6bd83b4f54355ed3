from __future__ import annotations

from propylon_operator import documents

LIVE_API = {
    "apiVersion": "propylon.dev/v1alpha1",
    "kind": "Api",
    "metadata": {
        "name": "users",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl"}],
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
    },
    "spec": {"routes": []},
    "status": {"observedGeneration": 3},
}


def test_a_live_object_becomes_a_document_named_after_it() -> None:
    document = documents.to_document(LIVE_API)
    assert (document.origin.file, document.origin.document) == ("Api/shop/users", 1)
    meta = document.body["metadata"]
    assert "status" not in document.body
    assert not {"uid", "resourceVersion", "managedFields", "generation", "annotations"} & set(meta)
    assert meta["labels"] == {"team": "a"}
    assert meta["creationTimestamp"] == "2026-01-01T00:00:00Z"  # Stage conflicts are settled by age
    assert LIVE_API["status"] == {"observedGeneration": 3}  # the stored object is not modified


def test_fingerprint_ignores_status_and_bookkeeping_but_not_spec() -> None:
    base = documents.fingerprint([documents.to_document(LIVE_API)])
    status_only = {
        **LIVE_API,
        "status": {"observedGeneration": 4},
        "metadata": {**LIVE_API["metadata"], "resourceVersion": "43"},
    }
    assert documents.fingerprint([documents.to_document(status_only)]) == base
    edited = {**LIVE_API, "spec": {"routes": [{"routeKey": "GET /x"}]}}
    assert documents.fingerprint([documents.to_document(edited)]) != base


def test_authorizers_name_the_secrets_they_need() -> None:
    authorizer = {"kind": "Authorizer", "spec": {"jwt": {"secretRef": {"name": "jwt", "key": "secret"}}}}
    assert documents.secret_references(authorizer) == ["jwt"]
    assert documents.secret_references({"kind": "Authorizer", "spec": {"jwt": {"issuer": "x"}}}) == []
    assert documents.secret_references({"kind": "Api", "spec": {"jwt": {"secretRef": {"name": "x"}}}}) == []
