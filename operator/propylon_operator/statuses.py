"""The status each Propylon object should show, computed from the compile outcome.

Pure: the reconcile passes in the snapshot, the verdicts, the replica counts and the time, and
gets back the ``status`` to write. Comparing that with what the object already shows is how
the operator avoids write loops: a status is only written when it would change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from propylon_compiler import label_selectors
from propylon_config import model
from propylon_operator import compiling, conditions, usage_polling
from propylon_operator import settings as settings_


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Replicas:
    serving: int  # fresh proxy replicas that serve the published version
    expected: int


def desired(
    body: dict[str, Any],
    verdict: compiling.Verdict,
    *,
    snapshot: model.GatewayConfig,
    settings: settings_.Settings,
    replicas: Replicas,
    now: str,
    usage: Mapping[str, usage_polling.Entry] | None = None,
) -> dict[str, Any]:
    kind = str(body.get("kind") or "")
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    current = mapping(body.get("status"))
    status: dict[str, Any] = {"observedGeneration": generation}
    extra: list[conditions.Condition] = []  # UsageReported, once usage was read
    accepted = (
        conditions.Condition(type="Accepted", status=conditions.TRUE, reason="Accepted")
        if verdict.accepted
        else conditions.Condition(
            type="Accepted", status=conditions.FALSE, reason=verdict.reason, message=verdict.message
        )
    )
    if not verdict.ready:
        ready = conditions.Condition(
            type="Ready", status=conditions.FALSE, reason=verdict.reason, message=verdict.message
        )
    else:
        ready = conditions.Condition(type="Ready", status=conditions.TRUE, reason="Ready")
    if kind == "Stage":
        ready = _stage(status, body, ready, snapshot=snapshot, settings=settings, replicas=replicas)
    elif kind == "UsagePlan":
        status["keyCount"] = key_count(body, snapshot)
        entry = (usage or {}).get(f"{meta.get('namespace')}/{meta.get('name')}")
        if entry is not None:
            if entry.usage is not None:
                status["usage"] = entry.usage
            extra = [entry.reported]
    status["conditions"] = conditions.merge(
        current.get("conditions"), [ready, accepted, *extra], generation=generation, now=now
    )
    return status


def _stage(
    status: dict[str, Any],
    body: dict[str, Any],
    ready: conditions.Condition,
    *,
    snapshot: model.GatewayConfig,
    settings: settings_.Settings,
    replicas: Replicas,
) -> conditions.Condition:
    meta = body.get("metadata") or {}
    stage_id = f"{meta.get('namespace')}/{meta.get('name')}"
    served = next((stage for stage in snapshot.stages if stage.id == stage_id), None)
    spec = mapping(body.get("spec"))
    base_path = served.base_path if served else str(spec.get("basePath") or f"/{meta.get('name')}")
    private = served.endpoint is model.Endpoint.PRIVATE if served else spec.get("endpoint") == "PRIVATE"
    status["url"] = settings.stage_url(base_path, private=private)
    status["configVersion"] = snapshot.version if served else None
    # During a rollout old and new pods can both serve it: never report more ready than wanted.
    serving = min(replicas.serving, replicas.expected)
    status["replicas"] = replicas.expected
    status["readyReplicas"] = serving if served else 0
    if ready.status != conditions.TRUE:
        return ready
    if served is None:
        return conditions.Condition(
            type="Ready", status=conditions.FALSE, reason="NotServed", message="the Stage is not in the snapshot"
        )
    if serving < replicas.expected:
        return conditions.Condition(
            type="Ready",
            status=conditions.FALSE,
            reason="ReplicasPending",
            message=f"{serving} of {replicas.expected} proxy replicas serve config version {snapshot.version}",
        )
    return conditions.Condition(
        type="Ready",
        status=conditions.TRUE,
        reason="Serving",
        message=f"{serving} of {replicas.expected} proxy replicas serve config version {snapshot.version}",
    )


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one: fields of live objects may be anything."""
    return value if isinstance(value, dict) else {}


def key_count(plan: dict[str, Any], snapshot: model.GatewayConfig) -> int:
    """The plan's usable API keys: selected, enabled, and with a value that compiled (at least
    20 characters), as the snapshot the proxies serve holds them, so the count never includes
    a key that a request could not use."""
    meta = plan.get("metadata") or {}
    plan_id = f"{meta.get('namespace')}/{meta.get('name')}"
    return sum(1 for key in snapshot.api_keys if key.enabled and plan_id in key.plans)


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector against ``labels`` (the compiler's reading of the rules)."""
    return label_selectors.matches(selector, labels)


def needs_write(current: dict[str, Any] | None, desired_status: dict[str, Any]) -> bool:
    """Whether writing ``desired_status`` would change anything the operator owns."""
    current = current or {}
    return any(current.get(field) != value for field, value in desired_status.items())
