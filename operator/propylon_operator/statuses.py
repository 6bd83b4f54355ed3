"""The status each Propylon object should show, computed from the compile outcome.

Pure: the reconcile passes in the snapshot, the verdicts, the replica counts and the time, and
gets back the ``status`` to write. Comparing that with what the object already shows is how
the operator avoids write loops: a status is only written when it would change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from propylon_config import model
from propylon_operator import compiling, conditions
from propylon_operator import settings as settings_

ENABLED_ANNOTATION = "propylon.dev/enabled"


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
    secrets: Iterable[dict[str, Any]],
    now: str,
) -> dict[str, Any]:
    kind = str(body.get("kind") or "")
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    current = mapping(body.get("status"))
    status: dict[str, Any] = {"observedGeneration": generation}
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
        status["keyCount"] = key_count(body, secrets)
    status["conditions"] = conditions.merge(
        current.get("conditions"), [ready, accepted], generation=generation, now=now
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
    status["replicas"] = replicas.expected
    status["readyReplicas"] = replicas.serving if served else 0
    if ready.status != conditions.TRUE:
        return ready
    if served is None:
        return conditions.Condition(
            type="Ready", status=conditions.FALSE, reason="NotServed", message="the Stage is not in the snapshot"
        )
    if replicas.serving < replicas.expected:
        return conditions.Condition(
            type="Ready",
            status=conditions.FALSE,
            reason="ReplicasPending",
            message=f"{replicas.serving} of {replicas.expected} proxy replicas serve config version {snapshot.version}",
        )
    return conditions.Condition(
        type="Ready",
        status=conditions.TRUE,
        reason="Serving",
        message=f"{replicas.serving} of {replicas.expected} proxy replicas serve config version {snapshot.version}",
    )


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one: fields of live objects may be anything."""
    return value if isinstance(value, dict) else {}


def key_count(plan: dict[str, Any], secrets: Iterable[dict[str, Any]]) -> int:
    """Enabled API keys the plan selects: labelled Secrets in its namespace."""
    namespace = (plan.get("metadata") or {}).get("namespace")
    spec = mapping(plan.get("spec"))
    selector = spec.get("apiKeySelector")
    if not isinstance(selector, dict):
        return 0
    count = 0
    for secret in secrets:
        meta = secret.get("metadata") or {}
        if meta.get("namespace") != namespace or not matches(selector, meta.get("labels") or {}):
            continue
        if str((meta.get("annotations") or {}).get(ENABLED_ANNOTATION, "true")).lower() == "false":
            continue
        count += 1
    return count


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key = expression.get("key")
        operator = expression.get("operator")
        values = expression.get("values") or ()
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    # An empty selector selects nothing here: a plan must say which keys are its own.
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def needs_write(current: dict[str, Any] | None, desired_status: dict[str, Any]) -> bool:
    """Whether writing ``desired_status`` would change anything the operator owns."""
    current = current or {}
    return any(current.get(field) != value for field, value in desired_status.items())
