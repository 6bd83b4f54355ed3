from __future__ import annotations

import base64
import json

from propylon_config import codec, model
from propylon_operator import leases, publishing, settings

SNAPSHOT = codec.with_version(model.GatewayConfig(version=""))


def test_the_secret_carries_the_snapshot_and_its_version() -> None:
    body = publishing.secret(SNAPSHOT, settings.Settings(gateway_name="gw", gateway_namespace="edge"), None)
    assert (body["metadata"]["name"], body["metadata"]["namespace"], body["type"]) == ("gw-snapshot", "edge", "Opaque")
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "propylon"
    payload = base64.b64decode(body["data"]["snapshot.json"])
    assert codec.loads(payload) == SNAPSHOT
    assert publishing.stored_version(body) == SNAPSHOT.version


def test_a_tampered_secret_has_no_trusted_version() -> None:
    body = publishing.secret(SNAPSHOT, settings.Settings(), None)
    body["metadata"]["annotations"][leases.VERSION_ANNOTATION] = "something-else"
    assert publishing.stored_version(body) is None
    body["data"]["snapshot.json"] = base64.b64encode(b"not json").decode()
    assert publishing.stored_version(body) is None
    assert publishing.stored_version(None) is None
    assert json.loads(base64.b64decode(publishing.secret(SNAPSHOT, settings.Settings(), None)["data"]["snapshot.json"]))


def test_the_key_hashing_secret_travels_beside_the_snapshot_never_inside_it() -> None:
    secret = b"install-secret-0123456789abcdef!"
    body = publishing.secret(SNAPSHOT, settings.Settings(), None, secret)
    assert publishing.key_secret(body) == secret
    assert base64.b64encode(secret).decode() not in body["data"]["snapshot.json"]
    assert secret not in base64.b64decode(body["data"]["snapshot.json"])
    assert publishing.key_secret(publishing.secret(SNAPSHOT, settings.Settings(), None)) is None


def test_the_sealing_secret_travels_beside_the_snapshot_and_the_proxy_reads_it_back() -> None:
    from propylon_proxy.kube import snapshots

    sealing = b"sealing-secret-0123456789abcdef!"
    body = publishing.secret(SNAPSHOT, settings.Settings(), None, b"k" * 32, sealing)
    assert publishing.sealing_secret(body) == sealing
    assert snapshots.sealing_secret(body) == sealing
    assert sealing not in base64.b64decode(body["data"]["snapshot.json"])
    assert publishing.sealing_secret(publishing.secret(SNAPSHOT, settings.Settings(), None)) is None


def _big_snapshot(routes: int) -> model.GatewayConfig:
    mock = model.Integration(type=model.IntegrationType.MOCK, mock=model.Mock(body="x"))
    stage = model.Stage(
        id="shop/prod",
        namespace="shop",
        name="prod",
        api="shop/api",
        base_path="/prod",
        routes=tuple(
            model.Route(
                id=f"shop/prod/GET /r{i}",
                route_key=f"GET /r{i}",
                method="GET",
                path=f"/r{i}",
                segments=(model.Segment(kind=model.SegmentKind.LITERAL, value=f"r{i}"),),
                integration=mock,
            )
            for i in range(routes)
        ),
    )
    return codec.with_version(model.GatewayConfig(version="", stages=(stage,)))


def test_a_snapshot_past_the_threshold_is_stored_gzip_and_the_proxy_reads_it() -> None:
    from propylon_proxy.kube import snapshots

    big = _big_snapshot(5000)  # several MiB of JSON: more than a Secret holds uncompressed
    assert len(codec.dumps(big)) > publishing.SECRET_LIMIT
    body = publishing.secret(big, settings.Settings(), None, b"k" * 32)
    assert set(body["data"]) == {publishing.GZIP_KEY, publishing.HASHING_KEY}
    assert sum(len(v) for v in body["data"].values()) < publishing.SECRET_LIMIT
    assert snapshots.decode(body) == big
    assert publishing.stored_version(body) == big.version
    # The same snapshot gives the same bytes (gzip without a timestamp): a restart writes nothing.
    assert publishing.secret(big, settings.Settings(), None, b"k" * 32)["data"] == body["data"]
    # A small one stays plain JSON, readable with kubectl.
    assert set(publishing.secret(SNAPSHOT, settings.Settings(), None)["data"]) == {publishing.DATA_KEY}
