"""List+watch of one kind of object in one namespace, in a background thread.

Why a thread and the synchronous ``kubernetes`` client rather than an aiohttp watcher: the
client already knows every way a proxy gets credentials (in-cluster service-account tokens that
rotate, kubeconfig files with client certs or exec plugins), and a watch is a long blocking
read that costs nothing in its own thread. The event loop only ever receives finished state
through ``publish`` (which callers wrap in ``loop.call_soon_threadsafe``), so nothing here runs
on the request path.

The protocol is the API server's: LIST gives the state and a resourceVersion; WATCH from that
resourceVersion streams changes (with bookmarks to keep the resourceVersion fresh); a 410 Gone
(the resourceVersion is too old to resume from) means LIST again. Any other failure (API server
down, network, 5xx) is logged and retried with capped exponential backoff; ``publish`` is not
called meanwhile, so the last state stays in force.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.watch import watch as kube_watch

log = logging.getLogger("propylon.kube")

Store = dict[str, dict[str, Any]]  # object name -> object, as the API server returns it


class Gone(Exception):
    """The watch's resourceVersion expired; a fresh LIST is needed."""


class Backoff:
    """Capped exponential backoff with jitter, so many replicas do not reconnect in lockstep."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = self.first


class ListWatch:
    """Keeps a full copy of the matching objects and publishes it after every change.

    ``list_fn`` is a namespaced list method of the generated client
    (e.g. ``CoreV1Api(client).list_namespaced_secret``). ``publish(store)`` is called from the
    watch thread with a fresh dict each time; ``on_failure()`` when a list or watch starts
    failing (once per outage), for callers that can do without this kind of object.
    """

    def __init__(
        self,
        *,
        what: str,
        list_fn: Callable[..., Any],
        namespace: str,
        publish: Callable[[Store], None],
        on_failure: Callable[[], None] | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        watch_seconds: int = 45,
        connect_timeout: float = 5.0,
    ) -> None:
        self.what = what
        self.namespace = namespace
        self._list_fn = list_fn
        self._publish = publish
        self._on_failure = on_failure
        self._selectors = {
            key: value
            for key, value in (("field_selector", field_selector), ("label_selector", label_selector))
            if value
        }
        self._watch_seconds = watch_seconds
        # The read timeout outlives the server-side watch timeout, so a silent, dead connection
        # (API server killed without closing the socket) is noticed within a minute at worst.
        self._timeout = (connect_timeout, watch_seconds + 15.0)
        self._stopped = threading.Event()
        self._backoff = Backoff()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; a blocked read is cut short by shutting its socket down."""
        self._stopped.set()
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                resource_version, store = self._list()
                self._recovered()
                self._publish(dict(store))
                self._watch(resource_version, store)
            except Gone:
                log.info("%s: watch expired (410 Gone), listing again", self.what)
            except Exception as error:  # the API server may fail in any way; keep serving
                if self._stopped.is_set():
                    return
                if getattr(error, "status", None) == 410:  # the client raises ApiException for non-2xx
                    log.info("%s: watch expired (410 Gone), listing again", self.what)
                    continue
                delay = self._backoff.next()
                if not self._failing:
                    if getattr(error, "status", None) in (401, 403):
                        problem = "not allowed by the API server (check RBAC)"
                    else:
                        problem = "API server unreachable"
                    log.warning("%s: %s (%s); keeping the last state, retrying", self.what, problem, _short(error))
                else:
                    log.debug("%s: still failing (%s); retrying in %.1f s", self.what, error, delay)
                if not self._failing and self._on_failure is not None:
                    self._on_failure()
                self._failing = True
                self._stopped.wait(delay)

    def _recovered(self) -> None:
        if self._failing:
            log.warning("%s: API server reachable again", self.what)
        self._failing = False
        self._backoff.reset()

    def _list(self) -> tuple[str, Store]:
        response = self._list_fn(
            self.namespace, _preload_content=False, _request_timeout=self._timeout, **self._selectors
        )
        try:
            body = _check(response, response.data)
        finally:
            response.release_conn()
        listing = json.loads(body)
        store = {item["metadata"]["name"]: item for item in listing.get("items") or ()}
        return listing["metadata"]["resourceVersion"], store

    def _watch(self, resource_version: str, store: Store) -> None:
        while not self._stopped.is_set():
            response = self._list_fn(
                self.namespace,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
                _preload_content=False,
                _request_timeout=self._timeout,
                **self._selectors,
            )
            self._response = response
            try:
                if response.status != 200:
                    _check(response, response.data)
                for line in kube_watch.iter_resp_lines(response):
                    if self._stopped.is_set():
                        return
                    if not line.strip():
                        continue
                    resource_version = self._apply(json.loads(line), store, resource_version)
            finally:
                self._response = None
                response.close()
                response.release_conn()

    def _apply(self, event: dict[str, Any], store: Store, resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        new_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
        if kind == "BOOKMARK":
            return new_version
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            store.pop(name, None)
        else:
            store[name] = obj
        self._publish(dict(store))
        return new_version


def _check(response: Any, body: bytes) -> bytes:
    status = getattr(response, "status", 200)
    if status == 410:
        raise Gone()
    if not 200 <= status <= 299:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    return body


def _short(error: BaseException) -> str:
    """The first line of an error: ApiException's str() carries every response header."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
