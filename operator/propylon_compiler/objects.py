"""Phase 1: index the input documents and sort the usable from the broken.

Every later phase reads objects through the ``Index`` built here, so the rules that decide
whether a document is an object at all live in one place: a known apiVersion/kind, a name, no
earlier object with the same (kind, namespace, name), and a body that passes the CRD schema.
The ``Reporter`` collects diagnostics and remembers which objects are broken, so a phase can
drop an object without knowing which earlier phase condemned it. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from propylon_compiler import diagnostics, manifests, schemas

GROUP_VERSION = "propylon.dev/v1alpha1"

KNOWN_KINDS: dict[str, str] = {
    "Api": GROUP_VERSION,
    "Stage": GROUP_VERSION,
    "UsagePlan": GROUP_VERSION,
    "Authorizer": GROUP_VERSION,
    "Secret": "v1",
    "Service": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
}

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name): the identity of an object, as Kubernetes sees it."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Object:
    """One usable input object: its document, and its body with the CRD defaults filled in."""

    document: manifests.Document
    body: dict[str, Any]
    order: int  # position in the input, for "loaded first wins" rules

    @property
    def kind(self) -> str:
        return self.document.kind

    @property
    def namespace(self) -> str:
        return self.document.namespace

    @property
    def name(self) -> str:
        return self.document.name

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def metadata(self) -> dict[str, Any]:
        return self.document.metadata

    @property
    def labels(self) -> dict[str, str]:
        labels = self.metadata.get("labels")
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class Reporter:
    """Collects diagnostics in the order phases find them; remembers broken objects."""

    def __init__(self) -> None:
        self._diagnostics: list[diagnostics.Diagnostic] = []
        self._seen: set[diagnostics.Diagnostic] = set()
        self._broken: set[ObjectKey] = set()
        self._schema_fields: dict[ObjectKey, list[str]] = {}

    def add(self, diagnostic: diagnostics.Diagnostic, *, breaks: bool = False) -> None:
        # The compiler still reads an object the schema refused, to report everything in one
        # run; but where the schema already spoke about a field, its word is enough.
        silenced = any(_overlap(diagnostic.field, f) for f in self._schema_fields.get(diagnostic.object_key, ()))
        self._record(diagnostic, breaks=breaks, report=not silenced)

    def add_schema_problem(self, diagnostic: diagnostics.Diagnostic) -> None:
        """A CRD schema violation: breaks the object and silences the compiler on that field.

        Schema problems are never silenced by one another: ``schemas.validate`` already reports
        each once, and a rule on a parent (``exactly one of service or url``) says nothing about
        a bad child field (``timeoutMillis``)."""
        self._record(diagnostic, breaks=True, report=True)
        if diagnostic.field:
            self._schema_fields.setdefault(diagnostic.object_key, []).append(diagnostic.field)

    def _record(self, diagnostic: diagnostics.Diagnostic, *, breaks: bool, report: bool) -> None:
        # Stages share their Api's routes, so the same finding can come up once per Stage.
        if report and diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self._diagnostics.append(diagnostic)
        if breaks:
            self._broken.add(diagnostic.object_key)

    def error(self, obj: Object, field: str, message: str, *, reason: str = "Invalid", breaks: bool = True) -> None:
        """Report a problem with ``obj``; by default the object is unusable (``breaks``)."""
        self.add(
            diagnostics.Diagnostic(
                origin=obj.document.origin,
                kind=obj.kind,
                namespace=obj.namespace,
                name=obj.name,
                field=field,
                message=message,
                reason=reason,
            ),
            breaks=breaks,
        )

    def is_broken(self, obj: Object) -> bool:
        return obj.key in self._broken

    @property
    def diagnostics(self) -> tuple[diagnostics.Diagnostic, ...]:
        return tuple(self._diagnostics)


class Index:
    """Usable objects by kind, each kind in input order."""

    def __init__(self, objects: Sequence[Object]) -> None:
        self._by_key = {obj.key: obj for obj in objects}
        self.all: tuple[Object, ...] = tuple(objects)

    def of_kind(self, kind: str) -> Iterator[Object]:
        return (obj for obj in self.all if obj.kind == kind)

    def get(self, kind: str, namespace: str, name: str) -> Object | None:
        return self._by_key.get((kind, namespace, name))


def index(documents: Sequence[manifests.Document], reporter: Reporter) -> Index:
    """Keep the documents that are objects we understand; report the others."""
    objects: list[Object] = []
    seen: dict[ObjectKey, manifests.Document] = {}
    for order, document in enumerate(documents):
        if not _is_object(document, reporter):
            continue
        key = (document.kind, document.namespace, document.name)
        first = seen.get(key)
        if first is not None:
            reporter.add(
                _diagnostic(
                    document,
                    "metadata.name",
                    f"duplicate {document.kind} {document.namespace}/{document.name}: first defined in {first.origin}",
                    reason="Duplicate",
                )
            )
            continue
        seen[key] = document
        if KNOWN_KINDS[document.kind] == GROUP_VERSION:
            problems, body = schemas.checked(document)
        else:
            problems, body = [], schemas.with_defaults(document)
        for problem in problems:
            reporter.add_schema_problem(problem)
        body = body if not problems else document.body
        objects.append(Object(document=document, body=body, order=order))
    return Index(objects)


def _is_object(document: manifests.Document, reporter: Reporter) -> bool:
    kind = document.kind
    if not kind:
        reporter.add(_diagnostic(document, "kind", "missing kind"))
        return False
    if not document.api_version:
        reporter.add(_diagnostic(document, "apiVersion", "missing apiVersion"))
        return False
    expected = KNOWN_KINDS.get(kind)
    if expected is None and document.api_version and not document.api_version.startswith("propylon.dev/"):
        # A folder applied with kubectl also holds Deployments, ConfigMaps, Namespaces...:
        # not ours to read, and not a mistake. A typo in one of our kinds is.
        return False
    if expected is None:
        known = ", ".join(sorted(KNOWN_KINDS))
        reporter.add(_diagnostic(document, "kind", f"unknown kind {kind!r} (expected one of: {known})"))
        return False
    if document.api_version != expected:
        reporter.add(
            _diagnostic(
                document, "apiVersion", f"{kind} must have apiVersion {expected!r}, not {document.api_version!r}"
            )
        )
        return False
    if not document.name:
        reporter.add(_diagnostic(document, "metadata.name", "missing metadata.name"))
        return False
    return True


def _diagnostic(
    document: manifests.Document, field: str, message: str, *, reason: str = "Invalid"
) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(
        origin=document.origin,
        kind=document.kind,
        namespace=document.namespace if document.name else "",
        name=document.name,
        field=field,
        message=message,
        reason=reason,
    )


def _overlap(field: str, other: str) -> bool:
    """Whether one field path is the other or inside it (``spec.routes[0]`` and ``spec.routes[0].x``)."""
    if not field or not other:
        return False
    short, long = sorted((field, other), key=len)
    return long == short or (long.startswith(short) and long[len(short)] in ".[")
