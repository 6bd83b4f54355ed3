"""The reconcile against an in-memory API server: what it applies and which statuses it writes."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from propylon_compiler import compiler, diagnostics, manifests
from propylon_operator import inventory, leases, reconciling, settings, stage_digests, workloads

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


class FakeClient:
    """Objects by path; apply stores the body as given (enough to see what the operator sends)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.applied: list[tuple[str, dict[str, Any], str]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self._uid = 0

    async def get(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path)

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        return []

    async def apply(self, path: str, body: dict[str, Any], *, field_manager: str = "propylon-operator") -> Any:
        self.applied.append((path, body, field_manager))
        self._uid += 1
        meta = {**body.get("metadata", {}), "uid": f"uid-{self._uid}", "resourceVersion": str(self._uid)}
        self.objects[path] = {**self.objects.get(path, {}), **body, "metadata": meta}
        return self.objects[path]

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patched.append((path, body))
        return body

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        return {}


def _reconciler(configured: settings.Settings, client: FakeClient) -> tuple[reconciling.Reconciler, Any]:
    store = inventory.Inventory()
    return reconciling.Reconciler(configured, client, store, clock=lambda: NOW), store  # type: ignore[arg-type]


def _deployments(client: FakeClient, manager: str = "propylon-operator") -> list[dict[str, Any]]:
    return [body for _, body, who in client.applied if body["kind"] == "Deployment" and who == manager]


def _redis_secret(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "gw-redis", "namespace": "edge"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


async def test_a_new_redis_url_rolls_the_proxies() -> None:
    """Item 3: the proxies read the URL from the Secret at start, so a new URL must change their
    pod template; the same URL again must not (no needless rollout)."""
    configured = settings.Settings(gateway_name="gw", gateway_namespace="edge", redis_secret="gw-redis")
    client = FakeClient()
    client.objects["/api/v1/namespaces/edge/secrets/gw-redis"] = _redis_secret("redis://one:6379/0")
    reconciler, _ = _reconciler(configured, client)
    await reconciler.prime()
    await reconciler.reconcile()
    first = _deployments(client)[-1]["spec"]["template"]
    reconciler.observe_redis_secret(_redis_secret("redis://two:6379/0"))
    assert reconciler.wakeup.is_set()
    await reconciler.reconcile()
    second = _deployments(client)[-1]["spec"]["template"]
    assert first != second
    assert second["metadata"]["annotations"][workloads.REDIS_CHECKSUM_ANNOTATION]
    reconciler.wakeup.clear()
    reconciler.observe_redis_secret(_redis_secret("redis://two:6379/0"))
    assert not reconciler.wakeup.is_set()


async def test_with_an_hpa_the_replica_count_is_held_by_a_second_field_manager() -> None:
    """Item 2: the Deployment applied without replicas would be reset to 1 by server-side apply;
    the count (never below proxy.replicas) is applied first under another manager."""
    configured = settings.Settings(gateway_name="gw", gateway_namespace="edge", replicas=3, hpa_max=9)
    client = FakeClient()
    path = "/apis/apps/v1/namespaces/edge/deployments/gw"
    client.objects[path] = {"kind": "Deployment", "metadata": {"name": "gw"}, "spec": {"replicas": 2}}
    reconciler, _ = _reconciler(configured, client)
    await reconciler.reconcile()
    order = [(body["kind"], who) for _, body, who in client.applied if body["kind"] == "Deployment"]
    assert order == [("Deployment", workloads.REPLICAS_MANAGER), ("Deployment", "propylon-operator")]
    (held,) = _deployments(client, workloads.REPLICAS_MANAGER)
    assert held["spec"] == {"replicas": 3}
    assert "replicas" not in _deployments(client)[-1]["spec"]


def _api(name: str, greeting: str) -> dict[str, Any]:
    body = f'{{"hello": "{greeting}"}}'
    return {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": name, "namespace": "shop", "generation": 1},
        "spec": {"routes": [{"routeKey": "GET /x", "integration": {"type": "MOCK", "mock": {"body": body}}}]},
    }


def _stage(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name, "namespace": "shop", "generation": 1},
        "spec": {"apiRef": name},
    }


def _lease(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "edge",
            "labels": {leases.SECRET_LABEL: "gw-snapshot"},
            "annotations": {leases.VERSION_ANNOTATION: version},
        },
        "spec": {"renewTime": NOW.isoformat(), "leaseDurationSeconds": 30},
    }


def _ready(store: Any, name: str) -> dict[str, Any]:
    body = store.get(inventory.Key("Stage", "shop", name))
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")


async def test_an_edit_leaves_the_stages_it_does_not_change_ready() -> None:
    """Item 8: while the proxies load a new version, a Stage that version serves exactly as the
    last one stays Ready=True; only the Stage whose result changed waits for the replicas."""
    # an edit of b's Api: a new version the proxies have not loaded yet
    await _edit_b_while_both_serve([_api("a", "one"), _stage("a"), _api("b", "one"), _stage("b")], _api("b", "two"))


async def _edit_b_while_both_serve(bodies: list[Any], edit: dict[str, Any]) -> None:
    """Stages a and b served by both replicas, then ``edit``, which changes only what serves b:
    a stays Ready while b waits for the replicas to load the new version."""
    configured = settings.Settings(gateway_name="gw", gateway_namespace="edge", replicas=2)
    reconciler, store = _reconciler(configured, FakeClient())
    for body in bodies:
        store.put(body)
    first = await reconciler.reconcile()
    for replica in ("p1", "p2"):
        store.put(_lease(replica, first.snapshot.version))
    await reconciler.reconcile()
    assert _ready(store, "a")["status"] == _ready(store, "b")["status"] == "True"
    store.put(edit)
    second = await reconciler.reconcile()
    assert second.snapshot.version != first.snapshot.version
    assert _ready(store, "a")["status"] == "True"
    assert _ready(store, "b")["reason"] == "ReplicasPending"


def _shop(name: str, *, issuer: str = "https://issuer.example", quota: int = 1000, key: str = "k" * 24) -> list[Any]:
    """One Stage ``name`` with everything it is served with: its Api, whose one route needs an
    API key and the Authorizer ``name``, proxies to the Service ``name``; a UsagePlan ``name``
    covering the Stage, and one key Secret that plan selects."""
    label = {"propylon.dev/usage-plan": name}
    return [
        {
            "apiVersion": "propylon.dev/v1alpha1",
            "kind": "Api",
            "metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {
                "routes": [
                    {
                        "routeKey": "GET /x",
                        "authorizer": name,
                        "apiKeyRequired": True,
                        "integration": {"type": "HTTP_PROXY", "service": {"name": name, "port": 80}},
                    }
                ]
            },
        },
        _stage(name),
        {
            "apiVersion": "propylon.dev/v1alpha1",
            "kind": "Authorizer",
            "metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {"type": "JWT", "jwt": {"issuer": issuer, "jwksUri": f"{issuer}/jwks.json"}},
        },
        {
            "apiVersion": "propylon.dev/v1alpha1",
            "kind": "UsagePlan",
            "metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {
                "stages": [{"stageRef": name}],
                "quota": {"limit": quota, "period": "DAY"},
                "apiKeySelector": {"matchLabels": label},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-key", "namespace": "shop", "labels": label},
            "stringData": {"value": key},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        _slice(name, "10.0.0.1"),
    ]


def _slice(service: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }


def _digests(bodies: list[Any]) -> dict[str, str]:
    documents = [
        manifests.Document(origin=diagnostics.Origin(file=f"{b['kind']}/{b['metadata']['name']}", document=1), body=b)
        for b in bodies
    ]
    result = compiler.compile(documents, options=compiler.CompileOptions(api_key_secret=b"s" * 32))
    assert result.ok, result.diagnostics
    assert {stage.id for stage in result.snapshot.stages} == {"shop/a", "shop/b"}
    return stage_digests.stage_digests(result.snapshot)


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(_shop("a", issuer="https://other.example"), id="its Authorizer"),
        pytest.param(_shop("a", quota=5), id="its UsagePlan"),
        pytest.param(_shop("a", key="n" * 24), id="its plan's API key"),
    ],
)
def test_a_stage_digest_covers_what_serves_it_and_nothing_of_other_stages(edited: list[Any]) -> None:
    """A replica on an older version counts for a Stage only while that version serves it the
    same: an edit of its Authorizer, plan or key alone must change its digest
    (or Ready=True would show before the proxies load it); the other Stage's must not change."""
    before = _digests([*_shop("a"), *_shop("b")])
    after = _digests([*edited, *_shop("b")])
    assert after["shop/a"] != before["shop/a"]
    assert after["shop/b"] == before["shop/b"]


def test_new_endpoints_of_its_service_keep_a_stage_digest() -> None:
    """The proxies balance over the EndpointSlices they watch themselves, whatever version they
    run: a backend pod that comes or goes must not make the Stages using it ReplicasPending."""
    before = _digests([*_shop("a"), *_shop("b")])
    after = _digests([*_shop("a")[:-1], _slice("a", "10.0.0.2"), *_shop("b")])
    assert after == before


def test_editing_another_stages_authorizer_and_plan_keeps_this_stage_digest() -> None:
    before = _digests([*_shop("a"), *_shop("b")])
    after = _digests([*_shop("a"), *_shop("b", issuer="https://other.example", quota=5, key="n" * 24)])
    assert after["shop/a"] == before["shop/a"]
    assert after["shop/b"] != before["shop/b"]


async def test_an_edit_of_only_a_stages_authorizer_waits_for_the_replicas() -> None:
    """Through the reconcile: a Stage whose Authorizer alone changed is ReplicasPending until the
    proxies load the new version; the Stage beside it stays Ready."""
    await _edit_b_while_both_serve([*_shop("a"), *_shop("b")], _shop("b", issuer="https://other.example")[2])


def _stage_at(name: str, base_path: str, hosts: list[str] | None = None) -> dict[str, Any]:
    """A Stage ``name`` of the Api ``a`` (from ``_shop("a")``) on ``base_path`` and ``hosts``."""
    spec: dict[str, Any] = {"apiRef": "a", "basePath": base_path}
    if hosts is not None:
        spec["hosts"] = hosts
    return {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name, "namespace": "shop", "generation": 1},
        "spec": spec,
    }


def _hosted(name: str, hosts: list[str]) -> list[Any]:
    """``_shop(name)`` with its Stage on ``hosts``."""
    shop = _shop(name)
    shop[1] = _stage_at(name, f"/{name}", hosts)
    shop[1]["spec"]["apiRef"] = name
    return shop


def _all_digests(bodies: list[Any]) -> dict[str, str]:
    documents = [
        manifests.Document(origin=diagnostics.Origin(file=f"{b['kind']}/{b['metadata']['name']}", document=1), body=b)
        for b in bodies
    ]
    result = compiler.compile(documents, options=compiler.CompileOptions(api_key_secret=b"s" * 32))
    assert result.ok, result.diagnostics
    return stage_digests.stage_digests(result.snapshot)


def test_a_new_stage_under_a_stages_base_path_changes_its_digest() -> None:
    """A Stage on /a/admin takes /a/admin/... from the Stage on /a: replicas still on the version
    without it serve those paths to /a, so /a's digest must change; /b's must not."""
    before = _all_digests([*_shop("a"), *_shop("b")])
    after = _all_digests([*_shop("a"), *_shop("b"), _stage_at("admin", "/a/admin")])
    assert after["shop/a"] != before["shop/a"]
    assert after["shop/b"] == before["shop/b"]


@pytest.mark.parametrize(
    ("hosts", "new_hosts", "takes"),
    [
        pytest.param(["a.example"], ["a.example"], True, id="same host"),
        pytest.param(["a.example"], ["*.example"], True, id="a wildcard naming its host"),
        pytest.param(["*.example"], ["x.example"], True, id="a host its wildcard names"),
        pytest.param(["a.example"], None, True, id="any host"),
        pytest.param(["a.example"], ["b.example"], False, id="another host"),
        pytest.param(["a.example"], ["*.other"], False, id="a wildcard of another domain"),
        pytest.param(["*.example"], ["x.y.example"], False, id="a host deeper than its wildcard"),
    ],
)
def test_a_new_stage_under_a_stages_base_path_counts_only_on_a_host_it_can_take(
    hosts: list[str], new_hosts: list[str] | None, takes: bool
) -> None:
    before = _all_digests([*_hosted("a", hosts), *_shop("b")])
    after = _all_digests([*_hosted("a", hosts), *_shop("b"), _stage_at("admin", "/a/admin", new_hosts)])
    assert (after["shop/a"] != before["shop/a"]) is takes
    assert after["shop/b"] == before["shop/b"]


def test_a_new_stage_beside_or_above_a_stages_base_path_keeps_its_digest() -> None:
    """Only a longer basePath under its own can take a Stage's requests: /ab and /c serve it the same."""
    before = _all_digests([*_shop("a"), *_shop("b")])
    after = _all_digests([*_shop("a"), *_shop("b"), _stage_at("ab", "/ab"), _stage_at("c", "/c")])
    assert after["shop/a"] == before["shop/a"]


async def test_a_new_stage_under_a_stages_base_path_waits_for_the_replicas() -> None:
    """Through the reconcile: /b is ReplicasPending until the proxies load the Stage that takes
    /b/admin from it; /a stays Ready."""
    await _edit_b_while_both_serve([*_shop("a"), *_shop("b")], _stage_at("admin", "/b/admin"))


async def test_a_broken_edit_keeps_an_api_whose_route_fails_closed_and_its_status_names_the_edit() -> None:
    """Audit: an Api served with a route whose Authorizer is missing (it fails closed, DESIGN.md
    §1) is served, so it is its last good version (§8). A broken edit used to drop it, and its
    Stage with it, while its status still led with the old missing Authorizer."""
    api = _api("a", "one")
    api["spec"]["routes"].append(
        {"routeKey": "GET /noauth", "authorizer": "missing", "integration": {"type": "MOCK", "mock": {}}}
    )
    configured = settings.Settings(gateway_name="gw", gateway_namespace="edge")
    reconciler, store = _reconciler(configured, FakeClient())
    store.put(api)
    store.put(_stage("a"))
    first = await reconciler.reconcile()
    assert [s.id for s in first.snapshot.stages] == ["shop/a"]
    edited = {**api, "metadata": {**api["metadata"], "generation": 2}}
    edited["spec"] = {
        "routes": [*api["spec"]["routes"], {"routeKey": "GET /pets/{id", "integration": {"type": "MOCK", "mock": {}}}]
    }
    store.put(edited)
    second = await reconciler.reconcile()
    assert second.snapshot.version == first.snapshot.version
    assert [r.route_key for s in second.snapshot.stages for r in s.routes] == ["GET /noauth", "GET /x"]
    conditions = {c["type"]: c for c in store.get(inventory.Key("Api", "shop", "a"))["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "Invalid"
    assert conditions["Ready"]["message"].startswith("spec.routes[2].routeKey: path segment '{id'")
    assert _ready(store, "a")["reason"] != "ApiNotReady"  # the Stage still serves the kept Api
