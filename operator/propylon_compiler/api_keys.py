"""Phase: API keys, the labelled Secrets each UsagePlan's ``apiKeySelector`` picks.

Key id = Secret name; the value is ``stringData.value`` or, base64-decoded, ``data.value``
(``stringData`` wins, as the API server merges it over ``data``). A value shorter than 20
characters is a diagnostic on the Secret and the key is left out: it is never accepted. A
Secret annotated ``propylon.dev/enabled: "false"`` is a disabled key: in the snapshot (plans
count it), with no digest, so nothing matches it.

Values leave this module only as keyed hashes (``propylon_config.key_hashing``) under the
secret the caller passes in; without one (``render``, ``validate``) digests are empty. A value
is never put in a diagnostic. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from propylon_compiler import apis, label_selectors, objects
from propylon_config import key_hashing, model

MIN_LENGTH = 20
ENABLED_ANNOTATION = "propylon.dev/enabled"


def compile_all(
    index: objects.Index,
    reporter: objects.Reporter,
    plans: Mapping[str, tuple[objects.Object, model.UsagePlan]],
    secret: bytes | None,
) -> tuple[model.ApiKey, ...]:
    selected: dict[objects.ObjectKey, list[str]] = {}
    for plan_obj, plan in plans.values():
        selector = plan_obj.spec.get("apiKeySelector")
        if not isinstance(selector, dict):
            continue
        for obj in index.of_kind("Secret"):
            if obj.namespace == plan.namespace and label_selectors.matches(selector, obj.labels):
                selected.setdefault(obj.key, []).append(plan.id)
    out: list[model.ApiKey] = []
    for obj in index.of_kind("Secret"):
        plan_ids = selected.get(obj.key)
        if plan_ids is None or reporter.is_broken(obj):
            continue
        value = _value(obj, reporter)
        if value is None:
            continue
        enabled = str(_annotations(obj).get(ENABLED_ANNOTATION, "true")).strip().lower() != "false"
        out.append(
            model.ApiKey(
                id=obj.id,
                namespace=obj.namespace,
                name=obj.name,
                plans=tuple(sorted(plan_ids)),
                enabled=enabled,
                digest=key_hashing.digest(secret, value) if secret is not None and enabled else "",
                source=apis.source(obj),
            )
        )
    _report_overlaps(out, plans, index, reporter)
    return tuple(sorted(out, key=lambda k: k.id))


def _value(obj: objects.Object, reporter: objects.Reporter) -> bytes | None:
    string_data = obj.body.get("stringData")
    data = obj.body.get("data")
    raw: bytes | None = None
    field = "stringData.value"
    if isinstance(string_data, dict) and "value" in string_data:
        text = string_data["value"]
        if not isinstance(text, str):
            reporter.error(obj, field, "expected a string")
            return None
        raw = text.encode()
    elif isinstance(data, dict) and "value" in data:
        field = "data.value"
        encoded = data["value"]
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            reporter.error(obj, field, "not valid base64")
            return None
    else:
        reporter.error(obj, "stringData.value", "an API key Secret needs the key in stringData.value or data.value")
        return None
    try:
        length = len(raw.decode())
    except UnicodeDecodeError:
        length = len(raw)
    if length < MIN_LENGTH:
        # The length is said, the value never is: diagnostics reach logs and statuses.
        reporter.error(
            obj, field, f"an API key must be at least {MIN_LENGTH} characters (this one has {length}); not accepted"
        )
        return None
    return raw


def _annotations(obj: objects.Object) -> dict[str, str]:
    found = obj.metadata.get("annotations")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _report_overlaps(
    keys: list[model.ApiKey],
    plans: Mapping[str, tuple[objects.Object, model.UsagePlan]],
    index: objects.Index,
    reporter: objects.Reporter,
) -> None:
    """A key may be in several plans, but (as in Amazon API Gateway) only one of them may cover
    a given Stage; the data plane then uses the first plan by id, and says so here."""
    for key in keys:
        owner: dict[str, str] = {}
        for plan_id in key.plans:
            for plan_stage in plans[plan_id][1].stages:
                first = owner.setdefault(plan_stage.stage, plan_id)
                if first != plan_id:
                    obj = index.get("Secret", key.namespace, key.name)
                    if obj is not None:
                        reporter.error(
                            obj,
                            "metadata.labels",
                            f"selected by UsagePlans {first} and {plan_id}, which both cover Stage "
                            f"{plan_stage.stage}; {first} applies there",
                            reason="Conflict",
                            breaks=False,
                        )
