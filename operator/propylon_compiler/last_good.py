"""The last-good rule (DESIGN.md §8 "Broken objects"), as one pure function both planes call.

A broken object never replaces its last good version: after a compile, every object that is
not ready and has a remembered good version that differs from what it is now gets that version
back, and the set is compiled again. An object broken by its own content is put back first;
one that only misses a reference (``MissingReference``, ``...NotReady``) usually heals once the
broken object it points at is back, so it is put back only if it is still broken after that,
and only if putting it back can help: it serves nothing as written, or its remembered version
was ready. Objects that are gone are forgotten: a deleted Api never comes back as its "last
good" self, and a route that names a deleted Authorizer refuses (it does not fall back to an
older body).

The memory records what was served: every object in the snapshot with no diagnostic about its
own content. An Api served with a route that fails closed (its Authorizer is missing, DESIGN.md
§1) is served, so it is that Api's last good version; an edit that breaks its content keeps it.

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
    """The last version of each object that was served, and which of them were also ready."""

    good: Mapping[ObjectKey, manifests.Document] = dataclasses.field(default_factory=dict)
    # Remembered versions that had no diagnostic at all: only these can heal an object that
    # misses a reference yet serves (an Api with a route that fails closed). Putting back a
    # version that failed the same way would only hide the user's edit.
    ready: frozenset[ObjectKey] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    result: compiler.CompileResult  # the compile of what is served (substitutes included)
    written: compiler.CompileResult  # the compile of the documents as given: what the user wrote
    # (a substituted object's status leads with what is wrong with its own content)
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
        open_ = candidates - substituted
        own = _own_errors(result) & _not_ready(result) & open_
        helpable = _not_accepted(result) | (_not_ready(result) & memory.ready)
        replace = own or (helpable & open_)
        if not replace:
            break
        served = [memory.good[key_of(d)] if key_of(d) in replace else d for d in served]
        substituted |= replace
        result = compiler.compile(served, options=options)
    own_errors = _own_errors(result)
    accepted = {(s.kind, s.namespace, s.name) for s in result.objects if s.accepted}
    good = {key_of(d): d for d in served if key_of(d) in accepted - own_errors}
    ready = {key for key in good if key not in _not_ready(result)}
    # Keep the remembered version of what is still present but broken; forget what is gone.
    for key, document in memory.good.items():
        if key in present and key not in good:
            good[key] = document
            if key in memory.ready:
                ready.add(key)
    return Kept(
        result=result,
        written=_leading_with_own_errors(written, frozenset(substituted)),
        substituted=frozenset(substituted),
        memory=Memory(good=good, ready=frozenset(ready)),
    )


def _own_errors(result: compiler.CompileResult) -> set[ObjectKey]:
    """Objects with a diagnostic about their own content: these are broken, whatever they serve."""
    return {d.object_key for d in result.diagnostics if not is_consequence(d)}


def _not_ready(result: compiler.CompileResult) -> set[ObjectKey]:
    return {(s.kind, s.namespace, s.name) for s in result.objects if not s.ready}


def _not_accepted(result: compiler.CompileResult) -> set[ObjectKey]:
    return {(s.kind, s.namespace, s.name) for s in result.objects if not s.accepted}


def _leading_with_own_errors(result: compiler.CompileResult, keys: frozenset[ObjectKey]) -> compiler.CompileResult:
    """The statuses of ``keys`` rewritten to lead with their first own-content diagnostic.

    The compiler's status names an object's first diagnostic. For an object served from its
    last good version, an older ``MissingReference`` (a route that fails closed in both
    versions) is not why the edit was refused; the new error in its own content is, so that
    is the reason and message the status gives (the count of the others stays)."""
    found: dict[ObjectKey, list[diagnostics.Diagnostic]] = {}
    for d in result.diagnostics:
        if d.object_key in keys:
            found.setdefault(d.object_key, []).append(d)
    statuses_ = []
    for status in result.objects:
        problems = found.get((status.kind, status.namespace, status.name), [])
        first = next((d for d in problems if not is_consequence(d)), None)
        if first is None or first is problems[0]:
            statuses_.append(status)
            continue
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        where = f"{first.field}: " if first.field else ""
        statuses_.append(dataclasses.replace(status, reason=first.reason, message=f"{where}{first.message}{more}"))
    return dataclasses.replace(result, objects=tuple(statuses_))
