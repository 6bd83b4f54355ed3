"""The last-good rule (DESIGN.md §8 "Broken objects"), as one pure function both planes call.

A broken object never replaces its last good version: after a compile, every object that is
not ready and has a remembered good version that differs from what it is now gets that version
back, and the set is compiled again. An object broken by its own content is put back first;
one that only misses a reference (``MissingReference``, ``...NotReady``) usually heals once the
broken object it points at is back, so it is put back only if it is still broken after that.
Objects that are gone are forgotten: a deleted Api never comes back as its "last good" self,
and a route that names a deleted Authorizer refuses (it does not fall back to an older body).

Pure like the compiler: the memory goes in and the next memory comes out; ``propylon serve``
keeps it between reloads, the operator between reconciles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from propylon_compiler import compiler, diagnostics, manifests, statuses

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)

_ROUNDS = 4  # substitution rounds; each puts back at least one object, and chains are short


@dataclasses.dataclass(frozen=True, slots=True)
class Memory:
    """The last version of each object that compiled cleanly."""

    good: Mapping[ObjectKey, manifests.Document] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    result: compiler.CompileResult  # the compile of what is served (substitutes included)
    written: compiler.CompileResult  # the compile of the documents as given: what the user wrote
    substituted: frozenset[ObjectKey]  # objects served from their last good version
    memory: Memory  # to pass to the next call

    def status(self, key: ObjectKey) -> statuses.ObjectStatus | None:
        """What to report for an object: a substituted one reports what is wrong with what the
        user wrote, every other one how it is served."""
        source = self.written if key in self.substituted else self.result
        return next((s for s in source.objects if (s.kind, s.namespace, s.name) == key), None)

    def reported(self) -> tuple[diagnostics.Diagnostic, ...]:
        """The diagnostics to show a user: those of what they wrote, then any the served set adds.

        A consequence reported on an object served as written (a Stage whose Api "is not valid;
        the Stage serves nothing") is left out when the served set does not have it: the Api's
        last good version was put back, so the Stage does serve, and saying otherwise would be
        false. An object that is itself served from its last good version keeps every line."""
        served = set(self.result.diagnostics)

        def shown(d: diagnostics.Diagnostic) -> bool:
            return d in served or not is_consequence(d) or d.object_key in self.substituted

        return tuple(dict.fromkeys((*filter(shown, self.written.diagnostics), *self.result.diagnostics)))


def key_of(document: manifests.Document) -> ObjectKey:
    return (document.kind, document.namespace, document.name)


def is_consequence(diagnostic: diagnostics.Diagnostic) -> bool:
    """A diagnostic about something this object points at, rather than about its own content."""
    return diagnostic.reason == "MissingReference" or diagnostic.reason.endswith("NotReady")


def compile_keeping_last_good(
    documents: Sequence[manifests.Document],
    memory: Memory,
    *,
    options: compiler.CompileOptions | None = None,
) -> Kept:
    present = {key_of(d): d for d in documents}
    written = result = compiler.compile(documents, options=options)
    # Only a remembered version that differs from the current one can help.
    candidates = {key for key, good in memory.good.items() if key in present and good.body != present[key].body}
    served = list(documents)
    substituted: set[ObjectKey] = set()
    for _ in range(_ROUNDS):
        broken = {s_key for s_key in _not_ready(result)} & (candidates - substituted)
        if not broken:
            break
        own = {d.object_key for d in result.diagnostics if not is_consequence(d)} & broken
        replace = own or broken
        served = [memory.good[key_of(d)] if key_of(d) in replace else d for d in served]
        substituted |= replace
        result = compiler.compile(served, options=options)
    ready = {(s.kind, s.namespace, s.name) for s in result.objects if s.ready}
    good = {key_of(d): d for d in served if key_of(d) in ready}
    # Keep the remembered version of what is still present but broken; forget what is gone.
    for key, document in memory.good.items():
        if key in present and key not in good:
            good[key] = document
    return Kept(result=result, written=written, substituted=frozenset(substituted), memory=Memory(good=good))


def _not_ready(result: compiler.CompileResult) -> set[ObjectKey]:
    return {(s.kind, s.namespace, s.name) for s in result.objects if not s.ready}
