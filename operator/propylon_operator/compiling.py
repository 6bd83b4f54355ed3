"""Running the compiler over the inventory, with the last-good rule for broken objects.

DESIGN.md section 8: a broken object never replaces its last good version. The compiler itself
is stateless, so the memory lives here: every object that compiles cleanly has its body
remembered, and when a later version of it is broken, the remembered body is compiled in its
place while the object's status still reports what is wrong with the new one. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from propylon_compiler import compiler, diagnostics, manifests
from propylon_config import codec, model
from propylon_operator import inventory

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


def verdicts_of(result: Any) -> dict[Key, Verdict]:
    """Per-object verdicts from a compile result.

    Errors make an object not ready; the reason is the first error's (``MissingReference``,
    ``Conflict``, ``Invalid``...). ``result.objects``, when the compiler reports objects
    explicitly (a broken object with no error of its own, say), has the last word.
    """
    by_key: dict[Key, list[diagnostics.Diagnostic]] = {}
    for diagnostic in getattr(result, "diagnostics", ()):
        if diagnostic.severity is not diagnostics.Severity.ERROR:
            continue
        key = _key_of(diagnostic)
        if key is not None:
            by_key.setdefault(key, []).append(diagnostic)
    out = {
        key: Verdict(ready=False, accepted=False, reason=found[0].reason or "Invalid", message=describe(found))
        for key, found in by_key.items()
    }
    for key, verdict in _reported_objects(result).items():
        out[key] = verdict
    return out


def _reported_objects(result: Any) -> dict[Key, Verdict]:
    objects = getattr(result, "objects", None)
    if not objects:
        return {}
    items = objects.items() if isinstance(objects, Mapping) else ((None, o) for o in objects)
    out: dict[Key, Verdict] = {}
    for raw_key, status in items:
        key = _object_key(raw_key, status)
        if key is None:
            continue
        ready = _flag(status, "ready")
        accepted = _flag(status, "accepted")
        if ready is None and accepted is None:
            continue
        ready = accepted if ready is None else ready
        accepted = ready if accepted is None else accepted
        reason = str(getattr(status, "reason", "") or ("Compiled" if ready else "Invalid"))
        message = str(getattr(status, "message", "") or "")
        out[key] = Verdict(ready=bool(ready), accepted=bool(accepted), reason=reason, message=message)
    return out


def _object_key(raw_key: Any, status: Any) -> Key | None:
    candidate = raw_key if raw_key is not None else getattr(status, "key", None)
    if isinstance(candidate, tuple) and len(candidate) == 3:
        return Key(*(str(part) for part in candidate))
    kind, namespace, name = (getattr(status, attr, None) for attr in ("kind", "namespace", "name"))
    if kind and name:
        return Key(str(kind), str(namespace or "default"), str(name))
    return None


def _flag(status: Any, name: str) -> bool | None:
    value = getattr(status, name, None)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    inner = getattr(value, "status", value)  # a condition-like object
    return str(inner) in ("True", "true") if not isinstance(inner, bool) else inner


def _options(allow_cross_namespace: bool) -> Any:
    options_type = getattr(compiler, "CompileOptions", None)
    if options_type is None:
        return None
    wanted = {"allow_cross_namespace": allow_cross_namespace}
    names = {f.name for f in dataclasses.fields(options_type)} if dataclasses.is_dataclass(options_type) else set()
    return options_type(**{k: v for k, v in wanted.items() if k in names})


def run_compiler(documents: Sequence[manifests.Document], *, allow_cross_namespace: bool) -> Any:
    options = _options(allow_cross_namespace)
    if options is None:
        return compiler.compile(documents)
    return compiler.compile(documents, options=options)


class LastGood:
    """Compiles the inventory, serving broken objects from their last good body."""

    def __init__(self, *, allow_cross_namespace: bool = False) -> None:
        self._allow_cross_namespace = allow_cross_namespace
        self._good: dict[Key, manifests.Document] = {}

    def compile(self, documents: Mapping[Key, manifests.Document]) -> Outcome:
        first = run_compiler(list(documents.values()), allow_cross_namespace=self._allow_cross_namespace)
        first_verdicts = verdicts_of(first)
        broken = {key for key, verdict in first_verdicts.items() if not verdict.ready and key in documents}
        # Forget objects that are gone: a deleted Api must not come back as its "last good" self.
        self._good = {key: doc for key, doc in self._good.items() if key in documents}
        substitutes = {
            key: self._good[key] for key in broken if key in self._good and self._good[key].body != documents[key].body
        }
        final, final_verdicts = first, first_verdicts
        if substitutes:
            merged = [substitutes.get(key, doc) for key, doc in documents.items()]
            final = run_compiler(merged, allow_cross_namespace=self._allow_cross_namespace)
            final_verdicts = verdicts_of(final)
        for key, doc in documents.items():
            if key not in broken:
                self._good[key] = doc
        verdicts = dict(final_verdicts)
        for key in substitutes:
            verdicts[key] = first_verdicts[key]  # status tells what is wrong with what the user wrote
        snapshot = final.snapshot
        if not snapshot.version:
            snapshot = codec.with_version(snapshot)
        return Outcome(
            snapshot=snapshot,
            verdicts=verdicts,
            diagnostics=tuple(getattr(first, "diagnostics", ())),
            substituted=frozenset(substitutes),
        )
