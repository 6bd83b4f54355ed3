from __future__ import annotations

import datetime

from propylon_compiler import compiler, diagnostics, manifests
from propylon_config import model
from propylon_operator import compiling, leases, settings, statuses

SETTINGS = settings.Settings(gateway_name="gw", gateway_namespace="edge", replicas=2)
SNAPSHOT = model.GatewayConfig(
    version="v1",
    stages=(model.Stage(id="demo/dev", namespace="demo", name="dev", api="demo/pets", base_path="/dev"),),
)
STAGE = {
    "kind": "Stage",
    "metadata": {"name": "dev", "namespace": "demo", "generation": 4},
    "spec": {"apiRef": "pets", "basePath": "/dev"},
}


def _status(body, verdict=compiling.OK, serving=0, snapshot=SNAPSHOT):
    return statuses.desired(
        body,
        verdict,
        snapshot=snapshot,
        settings=SETTINGS,
        replicas=statuses.Replicas(serving=serving, expected=2),
        now="T",
    )


def test_stage_status_names_its_url_version_and_replicas() -> None:
    status = _status(STAGE, serving=1)
    assert status["url"] == "http://gw.edge.svc/dev"
    assert status["configVersion"] == "v1"
    assert (status["replicas"], status["readyReplicas"]) == (2, 1)
    assert status["observedGeneration"] == 4
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "ReplicasPending")
    assert "1 of 2" in ready["message"]
    ready = _status(STAGE, serving=2)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Serving")


def test_ready_replicas_never_exceed_replicas_during_a_rollout() -> None:
    """Old and new pods both renew their Leases for a moment: three serving of two wanted shows
    two ready, and the Stage is Ready."""
    status = _status(STAGE, serving=3)
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Serving")
    assert "2 of 2" in ready["message"]


def test_a_private_stage_is_reached_through_the_internal_service() -> None:
    private = model.Stage(
        id="demo/dev", namespace="demo", name="dev", api="demo/pets", base_path="/", endpoint=model.Endpoint.PRIVATE
    )
    status = statuses.desired(
        STAGE,
        compiling.OK,
        snapshot=model.GatewayConfig(version="v2", stages=(private,)),
        settings=SETTINGS,
        replicas=statuses.Replicas(serving=2, expected=2),
        now="T",
    )
    assert status["url"] == "http://gw-internal.edge.svc/"


def test_a_broken_object_says_why_in_both_conditions() -> None:
    verdict = compiling.Verdict(ready=False, accepted=False, reason="Conflict", message="host taken")
    ready, accepted = _status(STAGE, verdict, serving=2)["conditions"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Conflict", "host taken")
    assert (accepted["status"], accepted["reason"]) == ("False", "Conflict")


def test_a_stage_missing_from_the_snapshot_has_no_version() -> None:
    other = {**STAGE, "metadata": {"name": "prod", "namespace": "demo", "generation": 1}, "spec": {"apiRef": "x"}}
    status = _status(other, serving=2)
    assert status["configVersion"] is None
    assert status["url"] == "http://gw.edge.svc/prod"
    assert status["conditions"][0]["reason"] == "NotServed"


def test_usage_plan_counts_the_keys_a_request_could_use() -> None:
    """keyCount comes from the compiled snapshot: disabled keys, keys too short to accept, other
    namespaces' and other plans' Secrets are not counted."""
    plan = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "UsagePlan",
        "metadata": {"name": "basic", "namespace": "demo", "generation": 1},
        "spec": {"apiKeySelector": {"matchLabels": {"propylon.dev/usage-plan": "basic"}}},
    }

    def secret(name, ns="demo", plan_name="basic", enabled=None, value="v" * 24):
        meta = {"name": name, "namespace": ns, "labels": {"propylon.dev/usage-plan": plan_name}}
        if enabled is not None:
            meta["annotations"] = {"propylon.dev/enabled": enabled}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"value": value}}

    bodies = [
        plan,
        secret("a"),
        secret("b"),
        secret("c", enabled="false"),
        secret("d", ns="other"),
        secret("e", plan_name="pro"),
        secret("f", value="short"),
    ]
    documents = [
        manifests.Document(origin=diagnostics.Origin(file="t", document=i + 1), body=b) for i, b in enumerate(bodies)
    ]
    snapshot = compiler.compile(documents).snapshot
    assert _status(plan, snapshot=snapshot)["keyCount"] == 2


def test_label_selectors() -> None:
    labels = {"tier": "gold", "team": "a"}
    assert statuses.matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}, labels)
    assert not statuses.matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, labels
    )
    assert statuses.matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not statuses.matches({"matchLabels": {"team": "b"}}, labels)
    assert not statuses.matches({}, labels)


def test_writes_are_skipped_when_nothing_would_change() -> None:
    status = _status(STAGE)
    assert statuses.needs_write({}, status)
    assert not statuses.needs_write(dict(status), status)
    assert not statuses.needs_write({**status, "unrelated": 1}, status)


def test_only_fresh_leases_of_our_secret_count() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 30, tzinfo=datetime.UTC)

    def lease(name, renewed, version, secret="gw-snapshot"):
        return {
            "metadata": {
                "name": name,
                "labels": {leases.SECRET_LABEL: secret},
                "annotations": {leases.VERSION_ANNOTATION: version},
            },
            "spec": {"renewTime": renewed, "leaseDurationSeconds": 30},
        }

    found = [
        lease("a", "2026-01-01T12:00:20.000000Z", "v1"),
        lease("b", "2026-01-01T12:00:10Z", "v1"),
        lease("c", "2026-01-01T11:59:00Z", "v1"),  # stale
        lease("d", "2026-01-01T12:00:25Z", "v0"),
        lease("e", "2026-01-01T12:00:25Z", "v1", secret="other-snapshot"),
    ]
    assert leases.versions(found, "gw-snapshot", now) == {"v1": 2, "v0": 1}
