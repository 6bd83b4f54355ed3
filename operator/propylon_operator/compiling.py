"""Running the compiler over the inventory, with the last-good rule for broken objects.

DESIGN.md section 8: a broken object never replaces its last good version. The rule is the
compiler's (``propylon_compiler.last_good``, shared with ``propylon serve``); the operator keeps
its memory between reconciles and turns object statuses into verdicts for the conditions, so a
substituted object's status still reports what is wrong with what the user wrote. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from propylon_compiler import compiler, diagnostics, label_selectors, last_good, manifests, statuses
from propylon_config import model
from propylon_operator import inventory
from propylon_operator import settings as settings_

Key = inventory.Key


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the compiler thinks of one object: usable or not, and why."""

    ready: bool
    accepted: bool
    reason: str
    message: str


OK = Verdict(ready=True, accepted=True, reason="Compiled", message="")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    snapshot: model.GatewayConfig
    verdicts: Mapping[Key, Verdict]  # every compiled object; objects absent here had no findings
    diagnostics: tuple[diagnostics.Diagnostic, ...]
    substituted: frozenset[Key]  # objects served from their last good version

    def verdict(self, key: Key) -> Verdict:
        return self.verdicts.get(key, OK)


def _key_of(diagnostic: diagnostics.Diagnostic) -> Key | None:
    """Which object a diagnostic is about. Documents built by the operator name it in their origin."""
    if diagnostic.kind and diagnostic.name:
        return Key(diagnostic.kind, diagnostic.namespace or "default", diagnostic.name)
    parts = diagnostic.origin.file.split("/", 2)
    if len(parts) == 3:
        return Key(*parts)
    return None


def describe(found: Sequence[diagnostics.Diagnostic]) -> str:
    """The condition message: the diagnostics as ``propylon validate`` prints them, minus the file."""
    return "; ".join(f"{d.field}: {d.message}" if d.field else d.message for d in found)


def verdicts_of(result: compiler.CompileResult) -> dict[Key, Verdict]:
    """Per-object verdicts from a compile result: the compiler's own object statuses (an
    object it did not index, such as a duplicate, is judged by its diagnostics)."""
    by_key: dict[Key, list[diagnostics.Diagnostic]] = {}
    for diagnostic in result.diagnostics:
        if diagnostic.severity is not diagnostics.Severity.ERROR:
            continue
        key = _key_of(diagnostic)
        if key is not None:
            by_key.setdefault(key, []).append(diagnostic)
    out = {
        key: Verdict(ready=False, accepted=False, reason=found[0].reason or "Invalid", message=describe(found))
        for key, found in by_key.items()
    }
    for status in result.objects:
        out[Key(status.kind, status.namespace, status.name)] = _verdict(status)
    return out


def _verdict(status: statuses.ObjectStatus) -> Verdict:
    return Verdict(ready=status.ready, accepted=status.accepted, reason=status.reason, message=status.message)


UNSEALED = Verdict(
    ready=False,
    accepted=True,
    reason="SecretNotDelivered",
    message="spec.jwt.secretRef: this install has no sealing secret, so the shared secret cannot reach the "
    "proxies; routes using this Authorizer refuse every request (500 AUTHORIZER_CONFIGURATION_ERROR)",
)


def unsealed_verdicts(snapshot: model.GatewayConfig, verdicts: Mapping[Key, Verdict]) -> dict[Key, Verdict]:
    """HS* Authorizers whose secret the snapshot could not carry (compiled without a sealing
    secret): the compiler accepts them, but proxies cannot verify with them, so Ready says so."""
    out: dict[Key, Verdict] = {}
    for authorizer in snapshot.authorizers:
        jwt = authorizer.jwt
        key = Key("Authorizer", authorizer.namespace, authorizer.name)
        if jwt is not None and jwt.secret_ref is not None and not jwt.sealed_secret and verdicts.get(key, OK).ready:
            out[key] = UNSEALED
    return out


def key_verdicts(documents: Mapping[Key, manifests.Document], verdicts: Mapping[Key, Verdict]) -> dict[Key, Verdict]:
    """UsagePlans that select an API key Secret the compiler refused (a value under 20
    characters, ...): the diagnostic is on the Secret, which has no status of its own, so the
    plan's Ready says it, the way a dropped route shows on its Api (still Accepted: the plan serves
    its other keys)."""
    broken = {key: verdict for key, verdict in verdicts.items() if key.kind == "Secret" and not verdict.ready}
    out: dict[Key, Verdict] = {}
    for plan_key, document in documents.items():
        if plan_key.kind != "UsagePlan":
            continue
        selector = (document.body.get("spec") or {}).get("apiKeySelector")
        found = [
            (secret_key, verdict)
            for secret_key, verdict in sorted(broken.items())
            if secret_key.namespace == plan_key.namespace
            and isinstance(selector, dict)
            and label_selectors.matches(selector, _labels(documents.get(secret_key)))
        ]
        if not found:
            continue
        own = verdicts.get(plan_key, OK)
        messages = [own.message] if not own.ready and own.message else []
        messages += [f"Secret {secret_key.name}: {verdict.message}" for secret_key, verdict in found]
        out[plan_key] = Verdict(
            ready=False,
            accepted=own.accepted,
            reason=own.reason if not own.ready else found[0][1].reason,
            message="; ".join(messages),
        )
    return out


def _labels(document: manifests.Document | None) -> dict[str, str]:
    labels = ((document.body.get("metadata") or {}).get("labels") or {}) if document is not None else {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def run_compiler(documents: Sequence[manifests.Document], *, allow_cross_namespace: bool) -> compiler.CompileResult:
    return compiler.compile(documents, options=compiler.CompileOptions(allow_cross_namespace=allow_cross_namespace))


class LastGood:
    """Compiles the inventory with the compiler's last-good rule, keeping its memory between
    reconciles (the same rule ``propylon serve`` applies between reloads)."""

    def __init__(self, *, allow_cross_namespace: bool = False, gateway_throttle: model.Throttle | None = None) -> None:
        self._options = compiler.CompileOptions(allow_cross_namespace=allow_cross_namespace)
        if gateway_throttle is not None:
            self._options = dataclasses.replace(self._options, gateway_throttle=gateway_throttle)
        self._memory = last_good.Memory()

    @classmethod
    def for_settings(cls, settings: settings_.Settings) -> LastGood:
        """The compiler the operator runs: its flags' cross-namespace rule and gateway-wide limit."""
        return cls(allow_cross_namespace=settings.allow_cross_namespace, gateway_throttle=settings.gateway_throttle)

    def use_key_secret(self, secret: bytes) -> None:
        """Hash API keys with the install's secret from now on (``publishing.key_secret``)."""
        self._options = dataclasses.replace(self._options, api_key_secret=secret)

    @property
    def key_secret(self) -> bytes | None:
        return self._options.api_key_secret

    def use_sealing_secret(self, secret: bytes) -> None:
        """Seal HS* Authorizer secrets under the install's secret (``publishing.sealing_secret``)."""
        self._options = dataclasses.replace(self._options, sealing_secret=secret)

    @property
    def sealing_secret(self) -> bytes | None:
        return self._options.sealing_secret

    def compile(self, documents: Mapping[Key, manifests.Document]) -> Outcome:
        kept = last_good.compile_keeping_last_good(list(documents.values()), self._memory, options=self._options)
        self._memory = kept.memory
        substituted = frozenset(Key(*key) for key in kept.substituted)
        verdicts = verdicts_of(kept.result)
        written = verdicts_of(kept.written)
        for key in substituted:
            verdicts[key] = written[key]  # status tells what is wrong with what the user wrote
        verdicts.update(unsealed_verdicts(kept.result.snapshot, verdicts))
        verdicts.update(key_verdicts(documents, verdicts))
        return Outcome(
            snapshot=kept.result.snapshot,
            verdicts=verdicts,
            diagnostics=kept.written.diagnostics,
            substituted=substituted,
        )
