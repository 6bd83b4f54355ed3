"""What exists in the cluster right now, as far as this gateway cares: the operator's index.

kopf's watch handlers put whole objects in and take them out; the reconcile reads a consistent
copy. Nothing here interprets an object beyond its kind, namespace and name, and nothing here
depends on what changed: the reconcile always looks at the whole picture (level-based).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

PROPYLON_KINDS = ("Api", "Stage", "UsagePlan", "Authorizer")
INPUT_KINDS = (*PROPYLON_KINDS, "Secret", "Service", "EndpointSlice")
"""Kinds fed to the compiler. Leases are kept too but only feed status."""


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: dict[str, Any]) -> Key:
        meta = body.get("metadata") or {}
        return cls(str(body.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Inventory:
    """Objects by key, and a way to wait until something changes."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._listeners: list[Callable[[Key], None]] = []

    def subscribe(self, listener: Callable[[Key], None]) -> None:
        """``listener`` runs (synchronously) after every change, with the changed key."""
        self._listeners.append(listener)

    def put(self, body: dict[str, Any], *, only_if_newer: bool = False) -> None:
        """Store ``body``; with ``only_if_newer``, not over a later version of the same object.

        The operator lists objects itself at start while kopf's watch streams them too; an
        older copy arriving second must not win for long (the watch then delivers the newer
        one again, but the reconcile may have run in between).
        """
        key = Key.of(body)
        if only_if_newer and is_older(body, self._objects.get(key)):
            return
        self._objects[key] = copy.deepcopy(dict(body))
        self._notify(key)

    def update_status(self, key: Key, status: dict[str, Any]) -> None:
        """Record a status the operator just wrote, without waking anyone: it is not an input."""
        body = self._objects.get(key)
        if body is not None:
            body["status"] = {**(body.get("status") or {}), **copy.deepcopy(status)}

    def discard(self, key: Key) -> None:
        if self._objects.pop(key, None) is not None:
            self._notify(key)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self._objects.get(key)

    def of_kind(self, *kinds: str) -> Iterator[dict[str, Any]]:
        """Objects of the given kinds, sorted by key so that every pass sees the same order."""
        for key in sorted(k for k in self._objects if k.kind in kinds):
            yield self._objects[key]

    def keys(self) -> list[Key]:
        return sorted(self._objects)

    def _notify(self, key: Key) -> None:
        for listener in self._listeners:
            listener(key)


def is_older(body: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether ``body`` is an earlier version of the same object (same uid) than ``stored``."""
    if stored is None:
        return False
    new_meta, old_meta = body.get("metadata") or {}, stored.get("metadata") or {}
    if new_meta.get("uid") != old_meta.get("uid"):
        return False
    try:
        # resourceVersions are opaque by contract, but etcd revisions in practice; when they are
        # not numbers the newer copy cannot be told, and the one given wins.
        return int(str(new_meta.get("resourceVersion"))) < int(str(old_meta.get("resourceVersion")))
    except (TypeError, ValueError):
        return False


class Wakeup:
    """An asyncio flag that many producers raise and one consumer clears."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self, *_: object) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()
