"""The pure parts of ``propylon_proxy.kube``: reading the snapshot Secret, resolving endpoints."""

from __future__ import annotations

import base64
import datetime
import gzip

import pytest

from propylon_config import codec, model
from propylon_proxy.kube import leases, slices, snapshots, watches

TARGET = model.ServiceTarget(namespace="shop", name="users", port=80)


def _config(*, endpoints: tuple[model.ServiceEndpoints, ...] = ()) -> model.GatewayConfig:
    route = model.Route(
        id="shop/users/prod/GET /u",
        route_key="GET /u",
        method="GET",
        path="/u",
        segments=(model.Segment(kind=model.SegmentKind.LITERAL, value="u"),),
        integration=model.Integration(type=model.IntegrationType.HTTP_PROXY, service=TARGET),
    )
    stage = model.Stage(
        id="shop/prod", namespace="shop", name="prod", api="shop/users", base_path="/prod", routes=(route,)
    )
    api = model.Api(id="shop/users", namespace="shop", name="users")
    return codec.with_version(model.GatewayConfig(version="", apis=(api,), stages=(stage,), endpoints=endpoints))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_plain_and_gzip_snapshots_decode_to_the_same_config() -> None:
    config = _config()
    text = codec.dumps(config).encode()
    assert snapshots.decode({"data": {"snapshot.json": _b64(text)}}) == config
    assert snapshots.decode({"data": {"snapshot.json.gz": _b64(gzip.compress(text))}}) == config


@pytest.mark.parametrize(
    "data, why",
    [
        ({}, "no snapshot.json"),
        ({"snapshot.json": "!!!"}, "not base64"),
        ({"snapshot.json": _b64(b"{not json")}, "unparsable"),
        ({"snapshot.json": _b64(b'{"schema_version": 99}')}, "schema_version"),
        ({"snapshot.json.gz": _b64(b"plain")}, "not gzip"),
    ],
)
def test_broken_snapshots_raise_a_snapshot_error_saying_why(data: dict[str, str], why: str) -> None:
    with pytest.raises(snapshots.SnapshotError, match=why):
        snapshots.decode({"data": data})


def _slice(name: str, service: str, ports: list[dict], endpoints: list[dict], address_type: str = "IPv4") -> dict:
    return {
        "metadata": {"name": name, "labels": {slices.SERVICE_NAME_LABEL: service}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }


SERVICE = {
    "metadata": {"name": "users"},
    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 81}]},
}


def test_service_port_is_matched_to_the_slice_port_by_name_and_only_ready_endpoints_count() -> None:
    ports = [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
    slice_a = _slice(
        "users-a",
        "users",
        ports,
        [
            {"addresses": ["10.0.0.2"], "conditions": {"ready": True}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
            {"addresses": ["10.0.0.4"]},  # no condition: ready
        ],
    )
    other = _slice("other-a", "other", ports, [{"addresses": ["10.9.9.9"]}])
    resolved = slices.resolve(TARGET, {"users": SERVICE}, [slice_a, other])
    assert resolved.key == "shop/users:80"
    assert [(a.address, a.port) for a in resolved.addresses] == [("10.0.0.2", 8080), ("10.0.0.4", 8080)]


def test_without_the_service_a_same_numbered_or_single_slice_port_is_used() -> None:
    single = _slice("users-a", "users", [{"name": "x", "port": 8080}], [{"addresses": ["10.0.0.2"]}])
    assert [a.port for a in slices.resolve(TARGET, None, [single]).addresses] == [8080]
    two = _slice(
        "users-b", "users", [{"name": "x", "port": 8080}, {"name": "y", "port": 80}], [{"addresses": ["10.0.0.5"]}]
    )
    assert [a.port for a in slices.resolve(TARGET, None, [two]).addresses] == [80]
    # The port the snapshot's endpoints already use wins over the number match.
    assert [a.port for a in slices.resolve(TARGET, None, [two], frozenset({8080})).addresses] == [8080]


def test_unnamed_slice_ports_follow_a_numeric_target_port() -> None:
    service = {"metadata": {"name": "users"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    unnamed = _slice("users-a", "users", [{"port": 8080}], [{"addresses": ["10.0.0.2"]}])
    assert [a.port for a in slices.resolve(TARGET, {"users": service}, [unnamed]).addresses] == [8080]


def test_live_endpoints_replace_the_snapshots_only_for_synced_namespaces() -> None:
    stale = model.ServiceEndpoints(key=TARGET.key, addresses=(model.EndpointAddress(address="10.1.1.1", port=1),))
    config = _config(endpoints=(stale,))
    unsynced = {"shop": slices.NamespaceView(services={}, slices={}, synced=False)}
    assert slices.with_live_endpoints(config, unsynced) is config
    live_slice = _slice("users-a", "users", [{"name": "http", "port": 8080}], [{"addresses": ["10.0.0.7"]}])
    views = {"shop": slices.NamespaceView(services={"users": SERVICE}, slices={"users-a": live_slice}, synced=True)}
    live = slices.with_live_endpoints(config, views)
    assert live.version == config.version  # status reports the snapshot the operator published
    assert live.endpoints == (
        model.ServiceEndpoints(key=TARGET.key, addresses=(model.EndpointAddress(address="10.0.0.7", port=8080),)),
    )


def test_lease_names_and_body() -> None:
    assert leases.lease_name("gw-snapshot", "Proxy_7f9c") == "gw-snapshot-proxy-7f9c"
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.UTC)
    body = leases.lease_body(namespace="ns", name="n", secret_name="gw", holder="pod-1", version="abc", now=now)
    assert body["metadata"]["labels"] == {"propylon.dev/snapshot-secret": "gw"}
    assert body["metadata"]["annotations"] == {"propylon.dev/config-version": "abc"}
    assert body["spec"] == {
        "holderIdentity": "pod-1",
        "leaseDurationSeconds": 30,
        "renewTime": "2026-01-02T03:04:05.600000Z",
    }
    announced = leases.lease_body(
        namespace="ns", name="n", secret_name="gw", holder="pod-1", version="abc", now=now, admin_url="http://10.1.2.3:9090"
    )
    # Where the operator reads this replica's /admin/usage for UsagePlan status.
    assert announced["metadata"]["annotations"]["propylon.dev/admin-url"] == "http://10.1.2.3:9090"


def test_a_410_in_the_watch_stream_or_as_a_status_means_list_again() -> None:
    watch = watches.ListWatch(what="t", list_fn=lambda *a, **k: None, namespace="ns", publish=lambda store: None)
    with pytest.raises(watches.Gone):
        watch._apply({"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}, {}, "5")

    class Response:
        status = 410

    with pytest.raises(watches.Gone):
        watches._check(Response(), b"")


def test_watch_events_keep_the_store_and_resource_version() -> None:
    published: list[dict] = []
    watch = watches.ListWatch(what="t", list_fn=lambda *a, **k: None, namespace="ns", publish=published.append)
    store: dict = {}
    obj = {"metadata": {"name": "a", "resourceVersion": "7"}}
    assert watch._apply({"type": "ADDED", "object": obj}, store, "5") == "7"
    assert watch._apply({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}, store, "7") == "9"
    gone = {"metadata": {"name": "a", "resourceVersion": "10"}}
    assert watch._apply({"type": "DELETED", "object": gone}, store, "9") == "10"
    assert published == [{"a": obj}, {}]
